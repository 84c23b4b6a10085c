"""Dataset converters: one module per layout, registered in an explicit dict.

``CONVERTERS[name]`` is the converter behind ``vmed data convert --format name``. Each yields
rows (``base.QARow`` or, for the streamed formats, ``base.RecordRow``); ``vmed.data.build`` turns
them into dialogue records.
"""

from __future__ import annotations

from vmed.data.converters.base import Converter, ConvertOptions, DataFormatError
from vmed.data.converters.hf_parquet import HfParquetConverter
from vmed.data.converters.llava import LlavaConverter
from vmed.data.converters.pathvqa import PathVqaConverter
from vmed.data.converters.roco import RocoConverter
from vmed.data.converters.slake import SlakeConverter
from vmed.data.converters.vqa_med import VqaMed2019Converter
from vmed.data.converters.vqa_rad import VqaRadConverter

__all__ = ["CONVERTERS", "Converter", "ConvertOptions", "DataFormatError"]

CONVERTERS: dict[str, Converter] = {
    "vqa-rad": VqaRadConverter(),
    "slake": SlakeConverter(),
    "pathvqa": PathVqaConverter(),
    "vqa-med-2019": VqaMed2019Converter(),
    "hf-parquet": HfParquetConverter(),
    "llava": LlavaConverter(),
    "roco": RocoConverter(),
}
