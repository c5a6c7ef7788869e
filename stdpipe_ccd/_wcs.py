"""WCS helpers for SWarp: SIP to TPV, and the grid that covers a set of images."""

import threading
import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

__all__ = ["covering_grid", "has_sip", "sip_to_tpv"]

#: held while the warning filters are changed: two threads that change and restore them
#: at once can leave the other's filters in place for good
_FILTERS_LOCK = threading.Lock()

#: SIP keywords that a TPV header must not carry
_SIP_PREFIXES = ("A_", "B_", "AP_", "BP_")


def has_sip(wcs):
    """Whether ``wcs`` has SIP distortion (which SWarp ignores)."""
    return wcs is not None and wcs.sip is not None


def sip_to_tpv(wcs, shape, *, degree=None, tolerance=0.01):
    """Return a FITS header of a TPV WCS equivalent to the TAN-SIP ``wcs`` over an image.

    SWarp ignores SIP silently but understands TPV. The TPV polynomials are
    fitted by least squares on a 41 x 41 grid spanning the image and a margin
    of 5 % around it.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        A celestial TAN-SIP WCS.
    shape : tuple of int
        ``(ny, nx)`` of the image.
    degree : int, optional
        Degree of the TPV polynomials; default is the SIP order plus one,
        at least 3.
    tolerance : float, optional
        Largest allowed difference between the two, in pixels, over the grid.

    Returns
    -------
    header : `~astropy.io.fits.Header`
        The WCS keywords, with ``CTYPE`` ``RA---TPV``/``DEC--TPV`` and
        ``PV1_k``/``PV2_k``.

    Raises
    ------
    ValueError
        The fit misses ``tolerance`` somewhere on the grid.
    """
    sip = wcs.sip
    order = max(sip.a_order, sip.b_order)
    degree = max(order + 1, 3) if degree is None else degree
    ny, nx = shape
    margin = 0.05
    gx, gy = np.meshgrid(
        np.linspace(-margin * nx, (1 + margin) * nx - 1, 41),
        np.linspace(-margin * ny, (1 + margin) * ny - 1, 41),
    )
    gx, gy = gx.ravel(), gy.ravel()
    ra, dec = wcs.all_pix2world(gx, gy, 0)

    linear = _linear_tan(wcs)
    crpix = linear.wcs.crpix - 1
    cd = linear.wcs.cd if linear.wcs.has_cd() else linear.wcs.get_pc() * linear.wcs.cdelt[:, None]
    # TPV works on intermediate coordinates (degrees) before and after the polynomials
    before = cd @ np.vstack([gx - crpix[0], gy - crpix[1]])
    tx, ty = linear.wcs_world2pix(ra, dec, 0)
    after = cd @ np.vstack([tx - crpix[0], ty - crpix[1]])

    header = linear.to_header(relax=False)
    for key in list(header):
        if key.startswith(("PV1_", "PV2_")):
            del header[key]
    header["CTYPE1"], header["CTYPE2"] = "RA---TPV", "DEC--TPV"
    for axis, (u, v) in ((1, (before[0], before[1])), (2, (before[1], before[0]))):
        design, indices = _tpv_terms(u, v, degree)
        coeffs = np.linalg.lstsq(design, after[axis - 1], rcond=None)[0]
        for index, coeff in zip(indices, coeffs, strict=True):
            header[f"PV{axis}_{index}"] = float(coeff)

    tpv = WCS(header)
    back_x, back_y = tpv.all_world2pix(ra, dec, 0)
    error = float(np.max(np.hypot(back_x - gx, back_y - gy)))
    if error > tolerance:
        msg = f"a TPV fit of degree {degree} misses the SIP WCS by {error:.3g} pixels"
        raise ValueError(msg)
    return header


def _linear_tan(wcs):
    """Return the celestial WCS without its distortions, projection TAN."""
    header = wcs.celestial.to_header(relax=False)
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    for key in list(header):
        if key.startswith(_SIP_PREFIXES) or key in ("A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER"):
            del header[key]
    return WCS(header)


def _tpv_terms(u, v, degree):
    """Design matrix of the TPV polynomial terms in (u, v) up to ``degree``, and their PV indices.

    TPV numbers the terms 1, u, v, r, u^2, uv, v^2, u^3, ..., with a radial
    term after each odd degree; radial terms are not used here.
    """
    columns, indices, index = [], [], 0
    for d in range(degree + 1):
        for k in range(d + 1):
            columns.append(u ** (d - k) * v**k)
            indices.append(index)
            index += 1
        if d % 2:
            index += 1  # the slot of the radial term r^d
    return np.column_stack(columns), indices


def covering_grid(wcs_list, shapes):
    """Return a TAN header (with ``NAXISn``) covering all images at their median pixel scale.

    The grid is north up, east left, centred on the images' footprints.
    (`reproject.mosaicking.find_optimal_celestial_wcs` does this too, but
    reproject is optional and SWarp users need none of it.)

    Parameters
    ----------
    wcs_list : list of `~astropy.wcs.WCS`
        Celestial WCS of each image.
    shapes : list of tuple of int
        ``(ny, nx)`` of each image.

    Returns
    -------
    header : `~astropy.io.fits.Header`
    """
    points = []
    for wcs, (ny, nx) in zip(wcs_list, shapes, strict=True):
        edge_x = np.concatenate(
            [np.linspace(0, nx - 1, 9), np.full(9, nx - 1), np.linspace(nx - 1, 0, 9), np.zeros(9)]
        )
        edge_y = np.concatenate(
            [np.zeros(9), np.linspace(0, ny - 1, 9), np.full(9, ny - 1), np.linspace(ny - 1, 0, 9)]
        )
        points.append(np.column_stack(wcs.all_pix2world(edge_x, edge_y, 0)))
    points = np.vstack(points)
    ra, dec = np.deg2rad(points[:, 0]), np.deg2rad(points[:, 1])
    vector = np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]).mean(1)
    centre_ra = np.rad2deg(np.arctan2(vector[1], vector[0])) % 360
    centre_dec = np.rad2deg(np.arctan2(vector[2], np.hypot(vector[0], vector[1])))
    scale = float(np.median([proj_plane_pixel_scales(w.celestial).mean() for w in wcs_list]))

    grid = WCS(naxis=2)
    grid.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    grid.wcs.crval = [centre_ra, centre_dec]
    grid.wcs.cd = [[-scale, 0.0], [0.0, scale]]
    grid.wcs.crpix = [1.0, 1.0]
    x, y = grid.wcs_world2pix(points[:, 0], points[:, 1], 0)
    x0, y0 = np.floor(x.min()), np.floor(y.min())
    grid.wcs.crpix = [1.0 - x0, 1.0 - y0]
    header = grid.to_header()
    header.insert(0, ("NAXIS", 2))
    header.insert(1, ("NAXIS1", int(np.ceil(x.max()) - x0) + 1))
    header.insert(2, ("NAXIS2", int(np.ceil(y.max()) - y0) + 1))
    return fits.Header(header)


def celestial_wcs(header, name):
    """Return the WCS of ``header``, which must be celestial (``name`` says whose)."""
    # FITSFixedWarning about dates and the like; wcslib warns while it parses, so the
    # warnings cannot be avoided, only silenced
    with _FILTERS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(header)
    if not wcs.has_celestial:
        msg = f"input {name} has no celestial WCS"
        raise ValueError(msg)
    return wcs
