"""The contract between the exporter and the runtime: tensor names and metadata keys.

Kept free of torch so :mod:`seqeq.export.runtime` can share it on machines without PyTorch.
"""

from __future__ import annotations

#: value of ``metadata_props["seqeq.format"]``; bump when the graph contract changes
FORMAT = "seqeq-onnx/1"
#: the same for the streaming (one time step) model of ``seqeq export --streaming``
FORMAT_STREAMING = "seqeq-onnx-streaming/1"

INPUT_X = "x"  # float32 (batch, time, channels), raw (unnormalised) data
INPUT_LENGTHS = "lengths"  # int64 (batch,), real steps of each series (1..time)
OUTPUT_LOGITS = "logits"  # float32 (batch, classes)
OUTPUT_PROBABILITIES = "probabilities"  # float32 (batch, classes), softmax of the logits

# the streaming model: one time step
INPUT_X_T = "x_t"  # float32 (batch, channels), one raw sample of each series
INPUT_STATE = "state"  # float32 (batch, S), the state after the previous sample
OUTPUT_STATE = "state_next"  # float32 (batch, S), the state after this sample

KEY_FORMAT = "seqeq.format"
KEY_VERSION = "seqeq.version"  # seqeq.__version__ that wrote the file
KEY_SPEC = "seqeq.spec"  # JSON: ModelSpec.to_dict()
KEY_CLASS_NAMES = "seqeq.class_names"  # JSON list, index = logit column
KEY_CHANNEL_NAMES = "seqeq.channel_names"  # JSON list, index = input channel
KEY_QUANTIZE = "seqeq.quantize"  # "none" or "int8"
KEY_METADATA = "seqeq.metadata"  # JSON object given by the caller (dataset, metrics, ...)
KEY_STREAMING = "seqeq.streaming"  # JSON: {"state_size", "layout": {part: [start, stop]}, "pool"}
KEY_INITIAL_STATE = "seqeq.initial_state"  # JSON list of S floats: the state before any sample
