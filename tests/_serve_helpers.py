"""Builders shared by the serve tests (``unit/test_api.py`` and ``integration/test_web_browser.py``).

``tests/conftest.py`` puts ``tests/`` on ``sys.path``, so test modules import these as ``_serve_helpers``.
"""

from __future__ import annotations

import io

import numpy as np

from vmed.inference import Engine


def tiny_engine(tmp_path_factory) -> Engine:
    """The real tiny preset, saved to a temp folder and loaded back with ``Engine.from_pretrained`` as ``vmed serve`` does."""
    from vmed.model import build_preset, save_model

    out = tmp_path_factory.mktemp("tiny-model")
    save_model(*build_preset("tiny"), out)
    return Engine.from_pretrained(out)


def ct_dicom_bytes(hu: np.ndarray, patient_name: str) -> bytes:
    """A CT slice file (explicit VR little endian) holding ``hu``, Hounsfield units of shape (rows, cols).

    Pixels are stored as int16 ``hu + 1024`` with RescaleIntercept -1024, as scanners do; PatientName is
    ``patient_name`` and PatientID its first 16 characters.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = patient_name, patient_name[:16], "CT"
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
