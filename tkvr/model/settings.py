"""The model group's settings (`--backbone`, `--frames`, `--temporal`, `--head`, ...): their
declarations, choices and cross-field checks. Torch-free, so `tkvr --help` loads no model; the
modules beside it (temporal, heads, video_model) read a `ModelConfig`, never the whole run."""

from __future__ import annotations

from dataclasses import dataclass

from tkvr.base.errors import TkvrError
from tkvr.base.settings import Settings, at_least, choice_problems, setting

# Registries' names, kept here so the CLI can validate and show them without importing torch.
TEMPORAL = ("tap", "t1d", "token-t1d", "t-trans")
HEADS = ("text", "random", "orthogonal", "lda", "learned")
TTRANS_FORMS = ("released", "near-tap", "clip")
T1D_FORMS = ("released", "identity")
CLASS_NAMES = ("words", "released")
TEMPLATE_MODES = ("average", "augment", "learn")
OBJECTIVES = ("recognition", "matching")

MAX_FRAMES = 512  # frames per clip: published recipes use 8 to 32; memory grows with it


def frames_problems(problems: list[str], obj) -> None:
    """--frames from 1 to MAX_FRAMES: refused up front, not after the memory has run out."""
    at_least(problems, obj, 1, "frames")
    if obj.frames is not None and obj.frames > MAX_FRAMES:
        problems.append(f"--frames {obj.frames}: at most {MAX_FRAMES} frames a clip")


def parse_logit_scale(text) -> str | float:
    """--logit-scale: "learn" or "fixed" as they are, else a positive finite number."""
    if text in ("learn", "fixed"):
        return text
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value < float("inf"):
        raise TkvrError(f"--logit-scale {text!r}: use learn, fixed or a positive number (e.g. 100)")
    return value


def scale_text(value) -> str:
    """--logit-scale's value as config.yaml records it: learn, fixed, or the number ('100')."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


# The model settings that shape a run's weights: a resumed run must share them, and `train --init`
# takes them from the run it starts from.
SHAPE_KEYS = (
    "backbone",
    "pretrained",
    "visual",
    "frames",
    "temporal",
    "temporal_layers",
    "t_trans_form",
    "t1d_form",
    "t1d_blocks",
    "logit_scale",
)  # --recipe: paper is every setting's own default


@dataclass
class ModelConfig(Settings):
    backbone: str = setting(
        "ViT-B/16",
        "OpenAI name (ViT-B/16, ViT-L/14, RN50, ...), open_clip name, "
        "hf-hub:ORG/REPO, or built-in tiny / tiny-rn / toy.",
    )
    pretrained: str | None = setting(
        None,
        "Weight tag (e.g. laion2b_s34b_b88k), a local checkpoint PATH, or "
        "'none'. OpenAI names default to 'openai'.",
    )
    visual: str | None = setting(
        None,
        "timm:NAME: the visual tower from timm (e.g. an ImageNet-pretrained "
        "timm:vit_base_patch16_224) instead of CLIP's; --backbone still gives the "
        "text encoder for the head, and a trainable projection maps the timm "
        "width to the text width where they differ.",
        shown="CLIP's visual tower",
    )
    visual_pretrained: bool = setting(
        True,
        "--visual: load timm's pretrained weights (from the Hugging Face hub "
        "or its cache); --no-visual-pretrained builds it randomly initialised.",
        negatable=True,
    )
    frames: int = setting(8, "Frames T per clip.")
    temporal: str = setting("tap", "Temporal module.", choices=TEMPORAL)
    temporal_layers: int = setting(6, "Layers of t-trans.")
    t_trans_form: str = setting(
        "released",
        "--temporal t-trans: released is the authors' released form (238c07f), mean(x + "
        "Transformer(x + pos)), positions and linear weights N(0, 0.02); "
        "near-tap (tkvr's) adds the transformer's output to the frame mean "
        "through a projection initialised near zero (starts as TAP).",
        choices=TTRANS_FORMS,
    )
    t1d_form: str = setting(
        "released",
        "--temporal token-t1d: released is the authors' released module (238c07f; the [class] "
        "token's channels start shifted, a quarter one frame left, a quarter right, "
        "half kept, before the attention and before the MLP of every block); "
        "identity (tkvr's) starts as the identity at the input of the chosen blocks.",
        choices=T1D_FORMS,
    )
    t1d_blocks: list[int] | None = setting(
        None,
        "--temporal token-t1d: a ViT block (0-based, negative from the "
        "end) whose [class] token gets the temporal convolution; repeat "
        "for several.",
        shown="every block (released form); the last half (identity form)",
    )
    head: str = setting("text", "Classifier head.", choices=HEADS)
    unfreeze_head: bool = setting(False, "Train the head too.")
    logit_scale: str | float = setting(
        "learn",
        "Temperature of the cosine heads: learn (start from the pre-trained model's "
        "own logit scale, 100 for OpenAI CLIP, and train it with the visual encoder, "
        "as released at 238c07f), fixed (keep the pre-trained value), or a number (fixed at it). "
        "The learned head has none.",
        parse=parse_logit_scale,
        text=scale_text,
    )
    templates: list[str] | None = setting(
        None,
        "Prompt template with {} for the class name; repeat to average several.",
        flag="--template",
        shown="the dataset's, e.g. 'a video of a person {}.'",
    )
    class_names: str = setting(
        "words",
        "How a class id reads in the prompt: words ('ApplyEyeMakeup' -> 'Apply Eye Makeup', "
        "'brush_hair' -> 'brush hair') or released (as the released label lists at 092ad0a spell them: "
        "underscores become spaces, 'ApplyEyeMakeup' stays joined).",
        choices=CLASS_NAMES,
    )
    template_mode: str = setting(
        "average",
        "How several templates make the text head: average (one classifier, "
        "the mean of the per-template embeddings: prompt ensembling) or "
        "augment (text augmentation: each step trains against one template's "
        "classifier, drawn by --seed and step; eval uses the average) or "
        "learn (CoOp-style: --prompt-length learned context vectors before "
        "each class name, through the frozen CLIP text encoder every step).",
        choices=TEMPLATE_MODES,
    )
    prompt_length: int = setting(8, "--template-mode learn: learned context vectors M before the class name.")
    objective: str = setting(
        "recognition",
        "recognition: cross-entropy over all classes against the frozen "
        "classifier (the paper's paradigm); matching: the video-text "
        "contrastive loss of the matching paradigm (Table 6), between "
        "videos and the text embeddings of their class names.",
        choices=OBJECTIVES,
    )
    label_smoothing: float = setting(
        0.0,
        "Label smoothing of the recognition loss: the target puts this much mass evenly on "
        "all classes (0: none).",
    )
    text_online: bool = setting(
        False,
        "--objective matching: train CLIP's text encoder too (online), at the "
        "visual encoder's lr; else its class embeddings stay fixed (offline).",
    )
    match_group: int | None = setting(
        None,
        "--objective matching: contrast the clips of a device step in groups of N, each group its "
        "own loss, averaged (16 = the paper's 128 clips on 8 GPUs: one device reproduces eight).",
        shown="all clips of a device step",
    )
    lda_samples: int = setting(60, "--head lda: videos per class to fit it on.")
    embeddings: str | None = setting(None, "Class embeddings from tkvr embed.", shown="computed on the fly")
    text_encoder: str | None = setting(
        None,
        "st:NAME_OR_PATH: embed the class names with a text-only "
        "sentence-transformers encoder instead of CLIP's text tower (pip "
        "install 'tkvr[text]'), mapped to the visual width by a fixed "
        "orthogonal map.",
        shown="CLIP's text tower",
    )

    def validate(self) -> list[str]:
        problems = choice_problems(self, nested=False)  # the declared choices
        at_least(problems, self, 1, "temporal_layers", "lda_samples", "prompt_length")
        frames_problems(problems, self)
        if self.prompt_length != 8 and self.template_mode != "learn":
            problems.append(
                f"--prompt-length {self.prompt_length} sets the learned context of --template-mode "
                f"learn; --template-mode is {self.template_mode}: leave it out"
            )
        if self.templates is not None:
            problems += template_problems(self.templates)
        if self.text_encoder and self.head != "text":
            problems.append(f"--text-encoder makes a text head; --head is {self.head}")
        if self.visual is not None and not self.visual.startswith("timm:"):
            problems.append(f"--visual {self.visual!r}: use timm:NAME (a timm model name)")
        elif self.visual and self.temporal in ("t1d", "token-t1d"):
            problems.append(
                f"--temporal {self.temporal} is inserted into CLIP's own ViT or ResNet; with --visual "
                "use tap or t-trans"
            )
        # independent checks: every conflict is reported, not only the first
        if self.template_mode in ("augment", "learn") and self.head != "text":
            problems.append(f"--template-mode {self.template_mode} shapes a text head; --head is {self.head}")
        if self.template_mode == "learn" and (self.text_encoder or self.embeddings or self.unfreeze_head):
            flag = (
                "--text-encoder"
                if self.text_encoder
                else "--embeddings"
                if self.embeddings
                else "--unfreeze-head"
            )
            problems.append(
                f"--template-mode learn trains context vectors through CLIP's own text encoder: "
                f"leave out {flag}"
            )
        if self.objective == "matching" and self.head != "text":
            problems.append(
                f"--objective matching matches videos with their class names' text; --head is {self.head}"
            )
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.objective == "matching":
            problems.append("--label-smoothing smooths the recognition loss; --objective matching has none")
        if self.match_group is not None and self.objective != "matching":
            problems.append(
                "--match-group groups the matching objective's clips; add --objective matching, or "
                "leave out --match-group"
            )
        if self.match_group is not None and self.match_group < 2:
            problems.append(f"--match-group {self.match_group}: a group needs 2 or more clips to contrast")
        if self.text_online and self.objective != "matching":
            problems.append(
                "--text-online trains the text encoder under --objective matching; add it, or leave "
                "out --text-online"
            )
        if self.text_online and (self.text_encoder or self.embeddings or self.template_mode != "average"):
            flag = (
                "--text-encoder"
                if self.text_encoder
                else "--embeddings"
                if self.embeddings
                else f"--template-mode {self.template_mode}"
            )
            problems.append(f"--text-online trains CLIP's own text encoder on one template: leave out {flag}")
        if self.template_mode == "augment" and self.unfreeze_head:
            problems.append(
                "--template-mode augment keeps each template's classifier frozen: leave out --unfreeze-head"
            )
        if self.template_mode == "augment" and self.embeddings:
            problems.append(
                "--template-mode augment embeds each template on its own: leave out --embeddings "
                "(a file holds one averaged matrix)"
            )
        return problems


def template_problems(templates) -> list[str]:
    if isinstance(templates, str) or not list(templates):
        return ["--template: give one or more prompt templates, each with {} where the class name goes"]
    return [
        f"--template {t!r} must contain '{{}}' exactly once, where the class name goes"
        for t in templates
        if not isinstance(t, str) or t.count("{}") != 1
    ]
