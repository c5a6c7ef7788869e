import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from stdpipe_ccd import MaskFlag
from stdpipe_ccd.io import read_fits, write_fits


def test_round_trip(masked, tmp_path):
    path = tmp_path / "masked.fits"
    ccd = masked.copy()
    ccd.uncertainty = StdDevUncertainty(np.full(ccd.shape, 12.5, dtype=np.float32))
    write_fits(ccd, path)
    back = read_fits(path)
    with fits.open(path) as hdul:
        assert [hdu.name for hdu in hdul] == ["PRIMARY", "MASK", "UNCERT", "FLAGS"]
    np.testing.assert_array_equal(back.data, ccd.data)
    np.testing.assert_array_equal(back.mask, ccd.mask)
    np.testing.assert_array_equal(back.flags, ccd.flags)
    np.testing.assert_array_equal(back.uncertainty.array, ccd.uncertainty.array)
    assert back.mask.dtype == bool
    assert back.flags.dtype == np.uint16
    assert back.unit == ccd.unit
    assert back.meta["MSKTOTAL"] == ccd.meta["MSKTOTAL"] == np.count_nonzero(ccd.mask)
    corners = ([0, 1023, 500], [0, 1023, 20])
    np.testing.assert_allclose(
        back.wcs.all_pix2world(*corners, 0), ccd.wcs.all_pix2world(*corners, 0)
    )
    # every reason survives: decoding the flags read back gives the same pixels
    for flag in MaskFlag:
        assert np.array_equal(back.flags & flag != 0, ccd.flags & flag != 0)


def test_no_overwrite_and_no_partial_files(masked, tmp_path, monkeypatch):
    path = tmp_path / "masked.fits"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_fits(masked, path)
    assert path.read_bytes() == b"keep me"

    def broken(self, name, **kwargs):
        with open(name, "wb") as stream:
            stream.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", broken)
    with pytest.raises(OSError, match="disk full"):
        write_fits(masked, path, overwrite=True)
    assert path.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masked.fits"]


def test_unit_only_where_the_file_has_none(tmp_path):
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.ones((4, 5), dtype=np.float32)).writeto(path)
    with pytest.raises(ValueError, match="unit"):
        read_fits(path)
    assert read_fits(path, unit="electron").unit == u.electron
    CCDData(np.ones((4, 5)), unit="adu").write(tmp_path / "adu.fits")
    assert read_fits(tmp_path / "adu.fits", unit="electron").unit == u.adu
    assert read_fits(tmp_path / "adu.fits").flags is None


def test_trim_with_flags_keeps_them_aligned():
    from stdpipe_ccd import datasets, make_mask
    from stdpipe_ccd.flags import MaskFlag, trim_with_flags

    masked = make_mask(datasets.make_frame((128, 160), seed=2).ccd, mask_bleed=True)
    trimmed = trim_with_flags(masked, "[1:100, 11:120]")
    np.testing.assert_array_equal(trimmed.flags, masked.flags[10:120, 0:100])
    np.testing.assert_array_equal(trimmed.mask, trimmed.flags != 0)
    assert not (trimmed.flags & MaskFlag.OUTSIDE_DATASEC).any()  # the overscan is cut away
    assert trim_with_flags(masked).flags.shape == masked.shape
