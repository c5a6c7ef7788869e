"""FITS files of a `~astropy.nddata.CCDData` with its mask, uncertainty and ``FLAGS``.

``CCDData.write`` writes ``.mask`` and ``.uncertainty`` as the
``MASK`` and ``UNCERT`` extensions but leaves ``.flags`` out; `write_fits`
adds it as a ``FLAGS`` extension, and a coadd's ``.exposure_map`` and
``.count_map`` as ``EXPMAP`` and ``NIMAGES``; `read_fits` reads them back. The file is
written under a temporary name and renamed when complete, so a file with the
final name is never a half-written one.
"""

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ._headers import inherit_primary
from ._inputs import ccd_from_hdulist, companions, image_hdus
from ._wcs import celestial_wcs

__all__ = ["read_fits", "write_fits"]

#: file name endings of FITS images
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")

FLAGS_EXTENSION = "FLAGS"
#: maps of a coadd (attribute: extension), as `~stdpipe_ccd.coadd` returns them
MAP_EXTENSIONS = {"exposure_map": "EXPMAP", "count_map": "NIMAGES"}


def write_fits(ccd, path, *, overwrite=False, primary=None):
    """Write a `~astropy.nddata.CCDData` with its mask, uncertainty and flags.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData` or list of them
        The image; ``.mask`` goes to a ``MASK`` extension, ``.uncertainty``
        to ``UNCERT`` (as ``CCDData.write`` does),
        ``.flags`` to ``FLAGS``, and a coadd's ``.exposure_map`` and
        ``.count_map`` to ``EXPMAP`` and ``NIMAGES``. A list (the CCDs of a
        mosaic camera) is written as one file with an empty primary HDU
        (``primary`` its header) and, for the k-th image, ``SCI``, ``MASK``,
        ``UNCERT`` and ``FLAGS`` extensions with ``EXTVER = k``.
    path : str or path-like
        Output FITS file.
    overwrite : bool, optional
        Replace an existing file. Default is `False`.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is `False`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stdpipe_ccd import datasets, make_mask
    >>> from stdpipe_ccd.io import read_fits, write_fits
    >>> masked = make_mask(datasets.make_frame((128, 128), seed=1).ccd)
    >>> path = Path(tempfile.mkdtemp()) / "masked.fits"
    >>> write_fits(masked, path)
    >>> back = read_fits(path)
    >>> bool((back.flags == masked.flags).all()), back.mask.dtype
    (True, dtype('bool'))
    """
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"{path} exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    if isinstance(ccd, (list, tuple)):
        hdul = _multi_extension(ccd, primary)
    else:
        hdul = ccd.to_hdu(hdu_mask="MASK", hdu_uncertainty="UNCERT", hdu_flags=None)
        if ccd.flags is not None:
            hdul.append(fits.ImageHDU(np.asarray(ccd.flags), name=FLAGS_EXTENSION))
        for attribute, name in MAP_EXTENSIONS.items():
            if getattr(ccd, attribute, None) is not None:
                hdul.append(fits.ImageHDU(np.asarray(getattr(ccd, attribute)), name=name))
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        hdul.writeto(temporary, overwrite=True)
        publish(temporary, path, overwrite=overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _multi_extension(ccds, primary):
    """Return several images as one file's HDUs: HST-style SCI/MASK/UNCERT/FLAGS sets."""
    header = fits.Header(primary or {})
    for key in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"):
        header.remove(key, ignore_missing=True)
    hdul = fits.HDUList([fits.PrimaryHDU(header=header)])
    hdul[0].header["EXTEND"] = True
    for version, ccd in enumerate(ccds, start=1):
        header = fits.Header(ccd.meta)
        if ccd.wcs is not None:
            header.update(ccd.wcs.to_header(relax=True))
        header["BUNIT"] = ccd.unit.to_string()
        parts = [fits.ImageHDU(np.asarray(ccd.data), header=header, name="SCI")]
        if ccd.mask is not None:
            parts.append(fits.ImageHDU(np.asarray(ccd.mask, dtype=np.uint8), name="MASK"))
        if ccd.uncertainty is not None:
            uncertainty = fits.ImageHDU(np.asarray(ccd.uncertainty.array), name="UNCERT")
            uncertainty.header["UTYPE"] = type(ccd.uncertainty).__name__
            parts.append(uncertainty)
        if ccd.flags is not None:
            parts.append(fits.ImageHDU(np.asarray(ccd.flags), name=FLAGS_EXTENSION))
        for part in parts:
            part.header["EXTVER"] = version
        hdul.extend(parts)
    return hdul


def publish(temporary, path, *, overwrite):
    """Give a complete file its final name, atomically.

    Without ``overwrite`` the name is taken with a hard link, which fails if
    the file exists, also when another process made it a moment ago.
    """
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        msg = f"{path} exists; pass overwrite=True to replace it"
        raise FileExistsError(msg) from None
    except OSError:  # a file system without hard links: no guard between processes
        if Path(path).exists():
            msg = f"{path} exists; pass overwrite=True to replace it"
            raise FileExistsError(msg) from None
        os.replace(temporary, path)
        return
    os.unlink(temporary)


def read_fits(path, *, unit=None, hdu=None):
    """Read a FITS image with its ``MASK``, ``UNCERT``, ``FLAGS`` and map extensions.

    Parameters
    ----------
    path : str or path-like
        FITS file, as written by `write_fits` or ``CCDData.write``.
    unit : `~astropy.units.Unit` or str, optional
        Unit of the data when the header has no ``BUNIT``.
    hdu : int or str, optional
        HDU of the image. Default is the first that holds a 2D image: the
        primary, or the first extension where the primary is empty (as in
        tile-compressed ``.fz`` files and HST-style files). Keywords the
        extension lacks are taken from the primary header.

    Returns
    -------
    ccd : `~astropy.nddata.CCDData`
        With ``.mask`` as booleans and ``.flags`` when the file has them.
    """
    with fits.open(path) as hdul:
        index = hdul.index_of(hdu) if hdu is not None else (image_hdus(hdul) or [0])[0]
        header = inherit_primary(hdul[index].header, hdul[0].header) if index else None
        unit = (header or hdul[0].header).get("BUNIT", unit)  # the file's own unit wins
        if index and hdul[index].header.get("EXTVER") is not None and companions(hdul, index):
            # one of several images, with companions of its EXTVER
            try:
                wcs = celestial_wcs(header, str(path))
            except ValueError:
                wcs = None
            return ccd_from_hdulist(hdul, index, header, wcs, unit or "adu", flags=True)
        extras = {
            attribute: hdul[name].data.astype(hdul[name].data.dtype.newbyteorder("="))
            for attribute, name in {"flags": FLAGS_EXTENSION, **MAP_EXTENSIONS}.items()
            if name in hdul
        }
    ccd = CCDData.read(path, hdu=index, unit=unit, hdu_mask="MASK", hdu_uncertainty="UNCERT")
    if header is not None:
        ccd.meta = inherit_primary(ccd.meta, header)  # what the primary header said once
    ccd.flags = extras.pop("flags", None)
    for attribute, values in extras.items():
        setattr(ccd, attribute, values)
    if ccd.mask is not None:
        ccd.mask = ccd.mask.astype(bool)
    return ccd
