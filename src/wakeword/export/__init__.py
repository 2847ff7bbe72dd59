"""Export: ONNX graphs with the front end inside (``graph``), static INT8 (``quantize``), and ``export_model``, which
writes them with a float-vs-INT8 accuracy report (``model``). The onnxruntime detectors live in ``wakeword.runtime.onnx``
(re-exported here for existing imports)."""
from wakeword.export.graph import (
    compact_names,
    export_onnx,
    export_streaming_onnx,
    fuse_batchnorm,
    inline_initializer_identities,
    model_stream_contract,
    stream_contract,
)
from wakeword.export.model import QAT_AUTO_DROP_POINTS, QAT_MODES, export_model
from wakeword.export.quantize import (
    INT8_FORMAT,
    INT8_KEEP_ENDS_FLOAT,
    INT8_REDUCE_RANGE,
    calibration_windows,
    quantize_int8,
    streaming_calibration_feeds,
)
from wakeword.runtime.detector import trained_phrase
from wakeword.runtime.onnx import ONNX_FORMAT, OnnxDetector, OnnxStreamer

__all__ = ["INT8_FORMAT", "INT8_KEEP_ENDS_FLOAT", "INT8_REDUCE_RANGE", "ONNX_FORMAT", "QAT_AUTO_DROP_POINTS",
           "QAT_MODES", "OnnxDetector", "OnnxStreamer", "calibration_windows", "compact_names", "export_model",
           "export_onnx", "export_streaming_onnx", "fuse_batchnorm", "inline_initializer_identities",
           "model_stream_contract", "quantize_int8", "stream_contract", "streaming_calibration_feeds",
           "trained_phrase"]
