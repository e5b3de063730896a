"""LoRA adapters on loaded components, with diffusers' semantics: `load_lora`, `set_adapters`, `fuse_lora`,
`unfuse_lora`, `delete_adapters`, `unload_lora`, and `apply_addons` for the CLI.

Every targeted Linear / Conv2d of a net becomes a `blocks.lora` layer holding all loaded adapters; the
adapter weights of `set_adapters` (`load_lora(scale=...)`) are one Parameter per net, written in place, so
a step compiled before keeps running without a new compile. Loading or deleting an adapter changes the
net's structure: `lora_version(net)` then changes, and graphs compiled before must be built again (a
compile cache keyed by the net should include it). Fusing adds the weighted updates to the base weights
(kept as copies, restored bit for bit by `unfuse_lora`) and switches the runtime path off.
"""
import weakref

import numpy as np

from ..blocks.lora import LoRAConv2d, LoRALinear, ParameterWriter, adapter_weights
from .lora_keys import NETS, lora_targets, parse_lora
from .paths import LoadError

_STATES = weakref.WeakKeyDictionary()


def replace_cell(root, path: str, cell) -> None:
    """Put cell at the dotted path of root's cell tree (CellList indices included)."""
    parent_path, _, name = path.rpartition(".")
    parent = root
    for part in parent_path.split(".") if parent_path else ():
        parent = parent._cells[part]
    if name.isdigit() and not hasattr(type(parent), name):
        parent[int(name)] = cell
    else:
        setattr(parent, name, cell)


def restore_parameter_names(net, keep=()) -> None:
    """Name every Parameter by its path again (inserting a cell renames its Parameters); `keep` are left alone."""
    for name, p in net.parameters_and_names():
        if all(p is not k for k in keep):
            p.name = name


class LoRAState:
    """The adapters of one net: matrices per adapter, their weights, the wrapped layers and fused originals."""

    def __init__(self, net, component: str):
        self.net, self.component = weakref.ref(net), component
        self.adapters = {}  # name -> {module path: (down, up, scale)}
        self.weights = {}  # name -> weight (0.0 = inactive)
        self.bases = {}  # module path -> the original Linear / Conv2d
        self.param = None  # the net's adapter-weights Parameter [A]
        self.fused = {}  # module path -> the original weight (numpy copy)
        self.fused_weights = {}  # adapter name -> weight it was fused with
        self.version = 0
        self._writers = {}

    def layers(self) -> dict:
        targets = lora_targets(self.net())
        return {p: targets[p] for p in self.bases}

    def _writer(self, kind: str, params: list) -> ParameterWriter:
        if kind not in self._writers:
            self._writers[kind] = ParameterWriter(params)
        return self._writers[kind]

    def _columns(self, path: str) -> tuple:
        """(down, up, mix) of one layer: the adapters holding it stacked along rank, mix[R, A] = scale."""
        names = list(self.adapters)
        downs, ups, mix = [], [], []
        for a, name in enumerate(names):
            if path in self.adapters[name]:
                down, up, scale = self.adapters[name][path]
                downs.append(down)
                ups.append(up)
                col = np.zeros((down.shape[0], len(names)), np.float32)
                col[:, a] = scale
                mix.append(col)
        return np.concatenate(downs, 0), np.concatenate(ups, 1), np.concatenate(mix, 0)

    def rebuild(self) -> None:
        """Re-wrap the net's layers for the current adapters (a structure change: new Parameters)."""
        net = self.net()
        targets = lora_targets(net)
        paths = [p for p in targets if any(p in layers for layers in self.adapters.values())]
        for path in [p for p in self.bases if p not in paths]:
            replace_cell(net, path, self.bases.pop(path))
            self._fix_names(net)
        self.param = adapter_weights(self._weight_vector(), f"{self.component}.lora_adapter_weights")
        for path in paths:
            base = self.bases.setdefault(path, targets[path])
            cls = LoRALinear if base.weight.ndim == 2 else LoRAConv2d
            replace_cell(net, path, cls(base, *self._columns(path), self.param, f"{self.component}.{path}"))
        self._fix_names(net)
        self.version += 1
        self._writers = {}

    def _fix_names(self, net) -> None:
        """Give every Parameter its full path as name again (inserting a cell renames its Parameters)."""
        restore_parameter_names(net, keep=(self.param,))
        if self.param is not None:
            self.param.name = f"{self.component}.lora_adapter_weights"

    def same_shapes(self, name: str, layers: dict) -> bool:
        old = self.adapters.get(name)
        return old is not None and old.keys() == layers.keys() and all(
            old[p][0].shape == layers[p][0].shape and old[p][1].shape == layers[p][1].shape for p in layers)

    def write_matrices(self) -> None:
        """Write every layer's stacked matrices and mix in place (same shapes: no structure change)."""
        layers = self.layers()
        params, values = [], []
        for path, cell in layers.items():
            down, up, mix = self._columns(path)
            params += [cell.lora_down, cell.lora_up, cell.lora_mix]
            values += [down, up, mix]
        self._writer("matrices", params)(values)

    def _weight_vector(self) -> np.ndarray:
        return np.asarray([0.0 if n in self.fused_weights else self.weights[n] for n in self.adapters], np.float32)

    def write_weights(self) -> None:
        self._writer("weights", [self.param])([self._weight_vector()])


def lora_state(net):
    """The LoRAState of a net, or None when no adapter was loaded into it."""
    return _STATES.get(net)


def lora_version(net) -> int:
    """A number that changes whenever LoRA loading changes the net's structure (0: never)."""
    state = _STATES.get(net)
    return 0 if state is None else state.version


def _nets(components) -> dict:
    return {c: getattr(components, c, None) for c in NETS if getattr(components, c, None) is not None}


def _states(components) -> dict:
    return {c: _STATES[n] for c, n in _nets(components).items() if n in _STATES}


def _refuse_fused(state: LoRAState, what: str) -> None:
    if state.fused:
        raise LoadError(f"{what}: the LoRA of {state.component} is fused; call unfuse_lora first")


def load_lora(components, path, adapter_name: str = None, scale: float = 1.0, ignore_unmatched: bool = False,
              replace: bool = False) -> str:
    """Load a LoRA file into the components' UNet / text encoders as adapter `adapter_name`, active with weight
    `scale`; returns the adapter name. replace=True swaps an adapter of that name (same ranks: in place)."""
    nets = _nets(components)
    parsed = parse_lora(path, nets, ignore_unmatched)
    states = _states(components)
    if adapter_name is None:
        adapter_name = f"default_{max((len(s.adapters) for s in states.values()), default=0)}"
    if not replace and any(adapter_name in s.adapters for s in states.values()):
        raise LoadError(f"LoRA adapter name {adapter_name!r} is already in use (pass another adapter_name, or "
                        f"replace=True)")
    for component, net in nets.items():
        state = states.get(component)
        if component not in parsed:
            if state is not None and adapter_name in state.adapters:
                _drop(state, [adapter_name])
            continue
        if state is None:
            state = _STATES[net] = LoRAState(net, component)
        _refuse_fused(state, "load_lora")
        in_place = state.same_shapes(adapter_name, parsed[component])
        state.adapters[adapter_name] = parsed[component]
        state.weights[adapter_name] = float(scale)
        if in_place:
            state.write_matrices()
            state.write_weights()
        else:
            state.rebuild()
    return adapter_name


def _component_weight(weight, component: str) -> float:
    if weight is None:
        return 1.0
    if isinstance(weight, dict):
        unknown = sorted(set(weight) - set(NETS))
        if unknown:
            raise ValueError(f"set_adapters: weights for {unknown} are not supported (per-net floats for "
                             f"{NETS}; per-block UNet weights are not implemented)")
        weight = weight.get(component, 1.0)
    if isinstance(weight, dict) or not isinstance(weight, (int, float)):
        raise ValueError(f"set_adapters: weight {weight!r} for {component} must be a number")
    return float(weight)


def set_adapters(components, adapter_names, adapter_weights=None) -> None:
    """Make exactly these adapters active with these weights (diffusers' set_adapters; others get weight 0).

    adapter_weights: None (1.0 each), a number, or a list of numbers / {"unet": w, "text_encoder": w} dicts.
    Writes Parameters in place: nothing compiled is rebuilt.
    """
    names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
    weights = adapter_weights if isinstance(adapter_weights, (list, tuple)) else [adapter_weights] * len(names)
    if len(weights) != len(names):
        raise ValueError(f"set_adapters: {len(names)} adapter names but {len(weights)} weights")
    states = _states(components)
    known = {n for s in states.values() for n in s.adapters}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"set_adapters: no adapter named {unknown} is loaded (loaded: {sorted(known)})")
    for component, state in states.items():
        _refuse_fused(state, "set_adapters")
        for name in state.adapters:
            state.weights[name] = _component_weight(weights[names.index(name)], component) if name in names else 0.0
        state.write_weights()


def active_adapters(components) -> dict:
    """{adapter name: {component: weight}} of the adapters with a non-zero weight."""
    out = {}
    for component, state in _states(components).items():
        for name, w in state.weights.items():
            if w:
                out.setdefault(name, {})[component] = w
    return out


def _delta(down: np.ndarray, up: np.ndarray, shape: tuple) -> np.ndarray:
    """up @ down as a weight of `shape` (a conv's kernel from the down matrix)."""
    return (up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1)).reshape(shape)


def fuse_lora(components, lora_scale: float = 1.0, adapter_names=None) -> None:
    """Add lora_scale * weight * scale * up @ down of the active (or named) adapters to the base weights, keeping
    the originals; the fused adapters' runtime path is switched off (diffusers' fuse_lora)."""
    for state in _states(components).values():
        _refuse_fused(state, "fuse_lora")
        names = [n for n in state.adapters if state.weights[n] and (adapter_names is None or n in adapter_names)]
        if not names:
            continue
        layers = state.layers()
        params, values = [], []
        for path, cell in layers.items():
            original = cell.weight.asnumpy().copy()
            fused = original.astype(np.float32)
            for name in names:
                if path in state.adapters[name]:
                    down, up, scale = state.adapters[name][path]
                    fused = fused + lora_scale * state.weights[name] * scale * _delta(down, up, original.shape)
            state.fused[path] = original
            params.append(cell.weight)
            values.append(fused.astype(original.dtype))
        state.fused_weights = {n: state.weights[n] for n in names}
        state._writer("base", params)(values)
        state.write_weights()


def unfuse_lora(components) -> None:
    """Restore the base weights saved by fuse_lora (bit for bit) and switch the runtime adapters back on."""
    for state in _states(components).values():
        if not state.fused:
            continue
        layers = state.layers()
        state._writer("base", [layers[p].weight for p in state.fused])(list(state.fused.values()))
        state.fused, state.fused_weights = {}, {}
        state.write_weights()


def _drop(state: LoRAState, names: list) -> None:
    for name in names:
        state.adapters.pop(name, None)
        state.weights.pop(name, None)
    state.rebuild()
    if not state.adapters:
        _STATES.pop(state.net(), None)


def delete_adapters(components, adapter_names) -> None:
    """Remove adapters (a structure change); a net left without adapters gets its plain layers back."""
    names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
    for state in _states(components).values():
        _refuse_fused(state, "delete_adapters")
        if any(n in state.adapters for n in names):
            _drop(state, [n for n in names if n in state.adapters])


def unload_lora(components) -> None:
    """Remove every adapter and put the plain layers back; fused weights stay fused (diffusers' unload)."""
    for state in _states(components).values():
        state.fused, state.fused_weights = {}, {}
        _drop(state, list(state.adapters))


def parse_lora_option(text: str) -> tuple:
    """The CLI's `--lora FILE[:SCALE]` -> (FILE, SCALE); a suffix that is no number is part of the path."""
    path, sep, scale = text.rpartition(":")
    if sep:
        try:
            return path, float(scale)
        except ValueError:
            pass
    return text, 1.0


def apply_addons(components, loras=(), embeddings=()) -> dict:
    """The CLI's add-ons: LoRA files [(path, scale)] as adapters `lora_0`, `lora_1`, ... (active with their scales),
    then textual-inversion embeddings [path]; returns {"loras": [...], "embeddings": [tokens...]} for metadata."""
    from .textual_inversion import load_textual_inversion

    names = [load_lora(components, path, adapter_name=f"lora_{i}", scale=scale)
             for i, (path, scale) in enumerate(loras)]
    tokens = [load_textual_inversion(components, path) for path in embeddings]
    return {"loras": [(str(p), float(s), n) for (p, s), n in zip(loras, names)], "embeddings": tokens}
