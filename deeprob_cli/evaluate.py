"""`deeprob eval RUN_DIR [split=val|test] [tta=none|flip|multicrop] [dataset.root=PATH]`: score a finished run.

Loads RUN_DIR/checkpoints/last.pt (weights_only), rebuilds the model from the stored config once it names only
deeprob's own options (trust.trusted: a run folder is data, never code), reads the data from the user's own
location (dataset.root= on the command line, else conf/dataset/'s default; never the run's), applies the
stored preprocessing, evaluates the chosen split without and with the run's test-time augmentation (or the
one `tta=` names), prints accuracy and loss, writes RUN_DIR/eval.json.
"""
import contextlib
import math
import sys
from pathlib import Path

from .trust import require_cwd

require_cwd("eval")  # before torch: its import fails natively in a deleted folder

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from . import UserError
from .checkpoint import load_checkpoint
from .config import CONFIG_DIR, EVAL_SETTINGS, SETTINGS, build, check_device, check_settings, option_names
from .exits import guarded
from .folders import write_json
from .validate import check_value
from .data import load_data
from .speed import for_eval, pick_device
from .trust import check_entries, data_settings, trusted

USAGE = ("usage: deeprob eval RUN_DIR [split=val|test] [tta=none|flip|multicrop] [dataset.root=PATH] "
         "[trainer.device=cpu|cuda]")


@torch.no_grad()
def evaluate(model, split, preprocess, device, batch_size: int = 1000, tta=None):
    """Mean cross-entropy and accuracy of model on split (uint8 images gathered batch by batch); with `tta`,
    of the softmax averaged over its views: log p = logsumexp over views of log_softmax − log(views)."""
    model.eval()
    loss, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    passes = getattr(tta, "stochastic", None)  # a stochastic TTA (mc_dropout) switches its layers back on
    with passes(model) if passes is not None else contextlib.nullcontext():
        for start in range(0, len(split), batch_size):
            x = split.images[start:start + batch_size].to(device, non_blocking=True).float().div_(255)
            y = split.labels[start:start + batch_size].to(device, non_blocking=True)
            views = tta(x) if tta is not None else [x]
            combine = getattr(tta, "combine", None)  # an option that averages logits its own way (flip_translate)
            if combine is not None:
                logits = F.log_softmax(combine([model(preprocess(v)).float() for v in views]), 1)
            else:
                log_probs = torch.stack([F.log_softmax(model(preprocess(v)).float(), 1) for v in views])
                logits = log_probs.logsumexp(0) - math.log(len(views))  # one view: exactly log_softmax(logits)
            loss += F.nll_loss(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    n = len(split)
    return loss.item() / n, correct.item() / n


def final_scores(model, data, preprocess, device, batch_size: int, tta, val_acc=None) -> dict:
    """End-of-training accuracies: val_acc(_tta), test_acc(_tta) (None where a split is missing); a val_acc
    already measured by the last epoch is taken as it is, not evaluated again."""
    one_view = len(tta(data.train.images[:1].float())) == 1  # tta=none: the plain figures, not computed twice
    scores = {}
    for name in ("val", "test"):
        split = getattr(data, name)
        known = val_acc if name == "val" else None
        plain = known if known is not None or split is None else evaluate(model, split, preprocess, device, batch_size)[1]
        with_tta = plain if one_view or split is None else evaluate(model, split, preprocess, device, batch_size, tta)[1]
        scores.update({f"{name}_acc": plain, f"{name}_acc_tta": with_tta})
    return scores


def restore(state: dict, cfg, device):
    """Rebuild the run's model and preprocessing from a checkpoint: the training assembly without init."""
    from .assemble import assemble

    preprocess = build(cfg.preprocess, "preprocess")
    preprocess.load_state_dict(state["preprocess"])
    model = assemble(cfg, preprocess.output_shape(state["input_shape"]), len(state["classes"]), init=False).model
    model.load_state_dict(state["model"])
    return model.to(device), preprocess.to(device)


def pick_tta(state: dict, cfg, name=None):
    """(name, tta) for the run's own test-time augmentation, or for conf/tta/<name>.yaml when name is given."""
    if name is None:
        name = state.get("choices", {}).get("tta", "none")
        node = cfg.get("tta") or OmegaConf.load(CONFIG_DIR / "tta" / "none.yaml")
    else:
        options = option_names("tta")
        if name not in options:
            raise UserError(f"tta: {name!r} is not one of {', '.join(options)}")
        node = OmegaConf.load(CONFIG_DIR / "tta" / f"{name}.yaml")
    return name, build(node, "tta")


def read_args(args) -> tuple:
    """(run folder, overrides) of `deeprob eval RUN_DIR [key=value ...]`, each value checked (config.EVAL_SETTINGS)."""
    if not args or args[0].startswith("-") or ("=" in args[0] and not Path(args[0]).is_dir()):
        raise UserError(f"eval: the first argument must be a run folder; {USAGE}")
    run_dir, overrides = Path(args[0]), OmegaConf.from_dotlist(args[1:])
    unknown = {k for k in _keys(overrides)} - set(EVAL_SETTINGS)
    if unknown:
        raise UserError(f"eval: unknown option {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(EVAL_SETTINGS))}")
    check_settings(overrides, EVAL_SETTINGS)
    return run_dir, overrides


def pick_split(data, overrides):
    """(name, split) that eval scores: split=val|test, by default val where the run held one out."""
    split_name = overrides.get("split", "val" if data.val is not None else "test")
    split = {"val": data.val, "test": data.test}[split_name]
    if split is None:
        raise UserError(f"split: this dataset has no {split_name} split"
                        + ("; try split=val" if split_name == "test" else "; try split=test"))
    return split_name, split


def run_eval(args) -> dict:
    run_dir, overrides = read_args(args)
    check_entries(run_dir)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    cfg = trusted(state["config"], f"{run_dir / 'checkpoints' / 'last.pt'}")  # a run folder is data, never code
    cfg.dataset = data_settings(cfg.dataset, overrides.get("dataset"))  # the user's data location, never the run's
    device_name = OmegaConf.select(overrides, "trainer.device", default="auto")
    check_device(device_name)
    device = pick_device(device_name)
    batch = OmegaConf.select(overrides, "trainer.eval_batch_size", default=cfg.trainer.eval_batch_size)
    try:
        check_value("trainer.eval_batch_size", batch, SETTINGS["trainer.eval_batch_size"])
    except ValueError as e:
        raise UserError(str(e)) from None
    data = load_data(cfg.dataset)
    if data.classes != list(state["classes"]):
        raise UserError(f"dataset.root: classes {data.classes} differ from the run's {list(state['classes'])}")
    if list(data.shape) != list(state["input_shape"]):
        raise UserError(f"dataset.root: images of shape {list(data.shape)} do not fit the run's model, trained on "
                        f"{list(state['input_shape'])}; evaluate on data of the run's shape")
    split_name, split = pick_split(data, overrides)
    model, preprocess = restore(state, cfg, device)
    model = for_eval(model, cfg.trainer, device)  # the run's precision (bf16 autocast) and memory layout
    tta_name, tta = pick_tta(state, cfg, overrides.get("tta"))
    loss, acc = evaluate(model, split, preprocess, device, batch)
    loss_tta, acc_tta = evaluate(model, split, preprocess, device, batch, tta)
    result = {"split": split_name, "accuracy": acc, "loss": loss, "tta": tta_name, "accuracy_tta": acc_tta,
              "loss_tta": loss_tta, "n": len(split)}
    print(f"{split_name}: accuracy {acc:.4f}  loss {loss:.4f}  ({len(split)} images); "
          f"with tta={tta_name}: accuracy {acc_tta:.4f}  loss {loss_tta:.4f}")
    try:
        write_json(run_dir / "eval.json", result)
    except OSError as e:
        raise UserError(f"the result above could not be written to {run_dir / 'eval.json'} ({e.strerror or e}); "
                        f"make the run folder writable to keep it") from None
    return result


def _keys(node, prefix=""):
    for key, value in node.items():
        if OmegaConf.is_dict(value):
            yield from _keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def main(args=None):
    """`deeprob eval`: exit 0 with the result, else one line and the code of exits.EXITS."""
    guarded("eval", run_eval, sys.argv[1:] if args is None else args)
    return 0
