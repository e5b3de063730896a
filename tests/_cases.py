"""Parametrization that keeps the suite within its time budget: every case in PyNative, one compiled.

A graph-mode compile costs 2-30 s per net and shape on a 2-core CPU; the support matrix (docs/SUPPORT.md,
`msdiff support`) runs every row in graph mode and fp16, so the tests compile one representative case per net
or recipe family.
"""


def net_cases(tags, dtypes=("float32", "float16"), graph: str = "jit", graph_tag=None) -> list:
    """(tag, dtype, mode) rows: every tag x dtype in PyNative, plus (graph_tag or the first tag, fp32) in `graph`."""
    tags = list(tags)
    return [(t, d, "pynative") for t in tags for d in dtypes] + [(graph_tag or tags[0], dtypes[0], graph)]


def mode_cases(names, graph: str = "graph", graph_name=None) -> list:
    """(name, mode) rows: every name in PyNative, plus one (graph_name or the first name) in `graph`."""
    names = list(names)
    return [(n, "pynative") for n in names] + [(graph_name or names[0], graph)]
