"""`wakeword train`, `wakeword teacher train`, `wakeword distill`."""
from __future__ import annotations

import argparse
import json

from wakeword.cli.common import TRAIN_KEYS, load_yaml, overrides, put, training_parent


def train_config(a: argparse.Namespace, recommended: bool = False):
    """The train config of a command; ``recommended``: with no --config (nor --arch / --init-from), the recommended
    recipe (`wakeword train`), else TrainConfig's defaults (the student, which `distill` trains)."""
    from wakeword import configs
    from wakeword.training.fit import TrainConfig

    if recommended and a.config is None and getattr(a, "arch", None) is None and not getattr(a, "init_from", None):
        d = load_yaml(str(configs.shipped(configs.RECOMMENDED)), "train")  # the recommended recipe (the demo's model)
    else:
        d = load_yaml(a.config, "train")
        if getattr(a, "arch", None):
            if d.get("arch", a.arch) != a.arch:
                d.pop("model", None)  # the config's model parameters belong to its own architecture
            d["arch"] = a.arch
    return TrainConfig.from_dict(overrides(d, a, (*TRAIN_KEYS, "init_from")))


def cmd_train(a: argparse.Namespace) -> int:
    from wakeword.training.fit import fit

    summary = fit(train_config(a, recommended=True), a.data, a.out, resume=not a.no_resume, progress=not a.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_teacher_train(a: argparse.Namespace) -> int:
    from wakeword.training.distill import teacher_config
    from wakeword.training.fit import fit

    d = overrides(load_yaml(a.config, "train"), a, TRAIN_KEYS)
    model = dict(d.get("model", {}))
    put(model, "preset", a.preset)
    put(model, "onnx_dir" if a.kind == "speech_embedding" else "pretrained", a.pretrained)
    if a.freeze_feature_encoder:
        model["freeze_feature_encoder"] = True
    put(model, "freeze_layers", a.freeze_layers)
    if a.kind != "wav2vec2" and (a.freeze_feature_encoder or a.freeze_layers):
        raise SystemExit("error: --freeze-* apply to --kind wav2vec2 only")
    if a.kind == "conformer" and a.pretrained:
        raise SystemExit("error: --pretrained applies to --kind wav2vec2 and speech_embedding only")
    d["model"] = model
    summary = fit(teacher_config(a.kind, d), a.data, a.out, resume=not a.no_resume, progress=not a.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_distill(a: argparse.Namespace) -> int:
    from wakeword.training.distill import DistillConfig, distill

    dd = load_yaml(a.config, "distill")
    if a.teacher:
        dd["teachers"] = list(a.teacher)
    put(dd, "feature_loss", a.feature_loss)
    put(dd, "weighting", a.weighting)
    if a.cache:
        dd["cache"] = True
    summary = distill(train_config(a), DistillConfig.from_dict(dd), a.data, a.out, resume=not a.no_resume,
                      progress=not a.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parent = training_parent()
    t = sub.add_parser("train", parents=[parent],
                       help="train a detector (resumes a killed run); no --config: the recommended recipe "
                            "(the shipped 'demo' recipe's train section)")
    t.add_argument("--config", help="YAML with a 'train:' section, or a shipped recipe's name (demo, demo_student)")
    t.add_argument("--arch", choices=["speech_embedding", "mobilenetv3", "mixednet"],
                   help="mobilenetv3: the small student for microcontroller-class devices; mixednet: the streaming "
                        "student on microWakeWord's front end (ESPHome export, docs/ESPHOME.md) (default: the "
                        "config's, or the recommended speech-embedding detector)")
    t.add_argument("--init-from", help="checkpoint to fine-tune from")
    t.set_defaults(func=cmd_train)

    te = sub.add_parser("teacher", help="teacher models for distillation").add_subparsers(dest="teacher_cmd",
                                                                                          required=True)
    tt = te.add_parser("train", parents=[parent], help="train a Wav2Vec2, Conformer or speech-embedding teacher "
                       "(resumes a killed run)")
    tt.add_argument("--kind", required=True, choices=["wav2vec2", "conformer", "speech_embedding"],
                    help="speech_embedding: a head on Google's speech embedding (pretrained on real speech, "
                         "from openWakeWord's feature models), the teacher that generalises to real voices")
    tt.add_argument("--config", help="YAML with a 'train:' section (model: holds teacher parameters)")
    tt.add_argument("--preset", help="size preset: tiny, small, base")
    tt.add_argument("--pretrained", help="wav2vec2: a hub name or local folder for from_pretrained; "
                    "speech_embedding: a folder with melspectrogram.onnx and embedding_model.onnx "
                    "(default: the installed openwakeword package's)")
    tt.add_argument("--freeze-feature-encoder", action="store_true", help="wav2vec2: do not train the conv encoder")
    tt.add_argument("--freeze-layers", type=int, help="wav2vec2: do not train the lowest N transformer layers")
    tt.set_defaults(func=cmd_teacher_train)

    ds = sub.add_parser("distill", parents=[parent],
                        help="train the student with soft labels and features from trained teachers")
    ds.add_argument("--config", help="YAML with 'train:' and 'distill:' sections")
    ds.add_argument("--teacher", action="append", help="trained teacher checkpoint (repeatable)")
    ds.add_argument("--feature-loss", choices=["mse", "cosine", "relational"])
    ds.add_argument("--weighting", choices=["fixed", "confidence", "correctness"])
    ds.add_argument("--cache", action="store_true", help="precompute teacher outputs (needs train.augment_draws)")
    ds.add_argument("--init-from", help="student checkpoint to start from")
    ds.set_defaults(func=cmd_distill)
