"""The image pipeline: safe decoding, derivatives, encoders, figures, batches and storage."""

from perflab.images.batch import BatchItem, process_batch
from perflab.images.encode import EncodeSettings
from perflab.images.errors import (
    CorruptImage,
    DecompressionBomb,
    EmptyFile,
    ImageError,
    InvalidKey,
    ObjectNotFound,
    ProcessingFailed,
    StorageError,
    TooLarge,
    UnreadableFile,
    UnsupportedFormat,
)
from perflab.images.keys import is_hashed_key, object_key
from perflab.images.pipeline import Derivative, ImagePipeline, PipelineOptions, ProcessedImage
from perflab.images.safety import SafetyLimits, sniff_format
from perflab.images.storage import LocalStorage, Storage, store_processed

__all__ = [
    "BatchItem",
    "CorruptImage",
    "DecompressionBomb",
    "Derivative",
    "EmptyFile",
    "EncodeSettings",
    "ImageError",
    "ImagePipeline",
    "InvalidKey",
    "LocalStorage",
    "ObjectNotFound",
    "PipelineOptions",
    "ProcessedImage",
    "ProcessingFailed",
    "SafetyLimits",
    "Storage",
    "StorageError",
    "TooLarge",
    "UnreadableFile",
    "UnsupportedFormat",
    "is_hashed_key",
    "object_key",
    "process_batch",
    "sniff_format",
    "store_processed",
]
