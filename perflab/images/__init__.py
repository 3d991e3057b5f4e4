"""The image pipeline: safe decoding, derivatives, encoders, figures, batches and storage."""

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
from perflab.images.pipeline import Derivative, ImagePipeline, PipelineOptions, ProcessedImage
from perflab.images.safety import SafetyLimits, sniff_format

__all__ = [
    "CorruptImage",
    "DecompressionBomb",
    "Derivative",
    "EmptyFile",
    "EncodeSettings",
    "ImageError",
    "ImagePipeline",
    "InvalidKey",
    "ObjectNotFound",
    "PipelineOptions",
    "ProcessedImage",
    "ProcessingFailed",
    "SafetyLimits",
    "StorageError",
    "TooLarge",
    "UnreadableFile",
    "UnsupportedFormat",
    "sniff_format",
]
