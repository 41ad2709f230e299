"""Cut a teacher into a head and a tail at a named module, with the teacher's own layers.

The model is traced with ``torch.fx`` (the module named by the split point kept as
one node) and its graph is cut right after that node. A cut is valid only when the
split module's output is the *one* value the rest of the forward needs: nothing
computed before it (not even the input) may be used after it. So a split inside a
residual block, or between a DenseNet layer and the concatenation that reuses its
input, is refused, and ``tail(head(x)) == model(x)`` holds bit for bit wherever a
split is accepted. For the sequential-style zoo models the valid points are the
top-level children (``layer2``, ``features.6`` ...) and the blocks inside them
(``layer2.1``, ``features.denseblock2``, ``features.transition2``); ``split_points``
lists them. Head and tail reuse the teacher's module objects (no copies), so
freezing the teacher freezes the tail.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from torch import fx, nn

from edgedistill.errors import UsageError


class _KeepModule(fx.Tracer):
    """The default tracer, plus: the modules in ``keep`` are opaque nodes.

    Kept modules are called as themselves, so forward hooks on them fire when the
    head or tail runs (generalized HND hooks tail modules this way).
    """

    def __init__(self, keep: Iterable[str]):
        super().__init__()
        self.keep = set(keep)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.keep or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module, keep: Iterable[str] = ()) -> fx.Graph:
    try:
        return _KeepModule(keep).trace(model)
    except Exception as err:  # fx raises several types on untraceable control flow
        raise UsageError(f"{type(model).__name__} cannot be traced with torch.fx for "
                         f"splitting ({type(err).__name__}: {str(err).splitlines()[0]})") from None


def _cut_valid(nodes: list[fx.Node], index: int) -> bool:
    """True when ``nodes[index]`` is the only value computed up to it and used after it."""
    later = set(nodes[index + 1:])
    for node in nodes[:index]:
        if any(user in later for user in node.users):
            return False
    return nodes[index].op not in ("placeholder", "output") and bool(nodes[index].users)


def split_points(model: nn.Module) -> list[str]:
    """Module paths where ``split_model`` can cut ``model``, in forward order.

    A module qualifies when the last node traced inside it is a valid cut and it
    is the outermost module ending there (``layer2`` rather than ``layer2.1.relu``).
    """
    nodes = list(_trace(model).nodes)
    points: list[str] = []
    for i, node in enumerate(nodes):
        stack = list(node.meta.get("nn_module_stack", {}))
        if not stack or not _cut_valid(nodes, i):
            continue
        follower = nodes[i + 1] if i + 1 < len(nodes) else None
        after = set(follower.meta.get("nn_module_stack", {})) if follower else set()
        ended = [path for path in stack if path not in after]
        if ended:
            points.append(ended[0])
    return points


def _refuse(model: nn.Module, at: str, why: str) -> UsageError:
    points = split_points(model)
    close = difflib.get_close_matches(at, points, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UsageError(f"cannot split {type(model).__name__} at {at!r}: {why}{hint}; "
                      f"valid split points: {', '.join(points)}")


def resolve_split_point(model: nn.Module, at: str) -> str:
    """A module path from a path or a layer alias (``stage2``, ``stage-1``)."""
    from edgedistill.models import resolve_layer_aliases

    return resolve_layer_aliases(model, [at])[0]


def split_model(model: nn.Module, at: str, keep: Iterable[str] = ()
                ) -> tuple[fx.GraphModule, fx.GraphModule]:
    """(head, tail) with ``tail(head(x)) == model(x)``; the head ends with module ``at``.

    ``keep``: module paths to call as whole modules inside head or tail (for hooks);
    none may contain the split point.
    """
    at = resolve_split_point(model, at)
    if at not in dict(model.named_modules()) or not at:
        raise _refuse(model, at, "no such module")
    keep = list(keep)
    inside = [k for k in keep if at == k or at.startswith(k + ".")]
    if inside:
        raise UsageError(f"{', '.join(inside)} contains the split point {at!r}; name modules "
                         "entirely after it")
    graph = _trace(model, keep=[at, *keep])
    nodes = list(graph.nodes)
    cuts = [i for i, n in enumerate(nodes) if n.op == "call_module" and n.target == at]
    if len(cuts) != 1:
        why = "it does not run in forward" if not cuts else "it runs more than once in forward"
        raise _refuse(model, at, why)
    index = cuts[0]
    if not _cut_valid(nodes, index):
        raise _refuse(model, at, "values computed before it are also used after it "
                                 "(e.g. a residual connection spans the cut)")
    head_graph, tail_graph = fx.Graph(), fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in nodes[:index + 1]:
        env[node] = head_graph.node_copy(node, lambda n: env[n])
    head_graph.output(env[nodes[index]])
    env = {nodes[index]: tail_graph.placeholder("z")}
    for node in nodes[index + 1:]:
        env[node] = tail_graph.node_copy(node, lambda n: env[n])
    return (fx.GraphModule(model, head_graph, class_name="Head"),
            fx.GraphModule(model, tail_graph, class_name="Tail"))
