"""Running a trained detector: in torch from its checkpoint (``detector``), or with onnxruntime only from its
export (``onnx``). Nothing here trains or evaluates."""
