"""The loader fuzzer's mutations of a model's structure: tensor names, graph inputs and
outputs, nodes, attributes, subgraphs, opsets, model-local functions and the annotations
metadata. Each takes the model and a ``random.Random`` and says what it did."""

from __future__ import annotations

from fuzz_bases import ANNOTATIONS_KEY, vi
from fuzz_protos import INTS, copy_message, graphs_of, names_of, nodes_of
from onnx import AttributeProto, helper

OPS = [
    "Conv",
    "Gemm",
    "MatMul",
    "Relu",
    "Add",
    "Reshape",
    "Loop",
    "If",
    "Scan",
    "Concat",
    "Constant",
    "Range",
    "ConstantOfShape",
    "Expand",
    "Tile",
    "Split",
    "Custom",
    "",
]
DOMAINS = [
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "com.microsoft",
    "local",
    "nope",
    "ai.onnx.preview.training",
]


def m_rename(m, rng):
    nodes, names = nodes_of(m), names_of(m)
    if not nodes:
        return "rename: none"
    n = rng.choice(nodes)
    new = rng.choice(names + ["", "nope", "x", "y"])
    ios = [("input", i) for i in range(len(n.input))] + [
        ("output", i) for i in range(len(n.output))
    ]
    if not ios:
        n.output.append(new)
        return f"rename: add output {new!r} to {n.op_type}"
    kind, i = rng.choice(ios)
    getattr(n, kind)[i] = new
    return f"rename: {n.op_type} {kind} {i} -> {new!r}"


def m_graph_io(m, rng):
    g = rng.choice(graphs_of(m))
    how = rng.choice(
        [
            "dup-input",
            "dup-output",
            "drop-outputs",
            "drop-inputs",
            "undefined-output",
            "input-is-init",
        ]
    )
    if how == "dup-input" and g.input:
        g.input.append(copy_message(g.input[0]))
    elif how == "dup-output" and g.output:
        g.output.append(copy_message(g.output[0]))
    elif how == "drop-outputs":
        del g.output[:]
    elif how == "drop-inputs":
        del g.input[:]
    elif how == "undefined-output":
        g.output.add().CopyFrom(vi("nowhere", [2]))
    elif how == "input-is-init" and g.initializer:
        g.input.add().CopyFrom(vi(g.initializer[0].name, [1]))
    return f"graph io: {how} in {g.name!r}"


def m_nodes(m, rng):
    g = rng.choice(graphs_of(m))
    if not g.node:
        return "nodes: none"
    how = rng.choice(
        ["dup", "drop", "shuffle", "reverse", "self-loop", "cycle", "op", "domain", "name"]
    )
    i = rng.randrange(len(g.node))
    n = g.node[i]
    if how == "dup":
        g.node.append(copy_message(n))
    elif how == "drop":
        del g.node[i]
    elif how in ("shuffle", "reverse"):
        nodes = list(g.node)
        rng.shuffle(nodes) if how == "shuffle" else nodes.reverse()
        copies = [copy_message(x) for x in nodes]
        del g.node[:]
        g.node.extend(copies)
    elif how == "self-loop" and n.output and n.input:
        n.input[0] = n.output[0]
    elif how == "cycle" and n.input:
        later = [o for x in g.node[i:] for o in x.output if o]
        n.input[0] = rng.choice(later) if later else n.input[0]
    elif how == "op":
        n.op_type = rng.choice(OPS)
    elif how == "domain":
        n.domain = rng.choice(DOMAINS)
    elif how == "name":
        n.name = rng.choice(["", g.node[0].name, "x" * 1000, "n"])
    return f"nodes: {how} node {i} ({n.op_type}) of {g.name!r}"


def m_attribute(m, rng):
    nodes = [n for n in nodes_of(m) if n.attribute]
    if not nodes:
        return "attribute: none"
    n = rng.choice(nodes)
    i = rng.randrange(len(n.attribute))
    a = n.attribute[i]
    how = rng.choice(["drop", "type", "ints", "int", "float", "string", "ref", "dup"])
    if how == "drop":
        del n.attribute[i]
    elif how == "type":
        a.type = rng.choice(list(AttributeProto.AttributeType.values()))
    elif how == "ints":
        a.ints.extend([rng.choice(INTS) for _ in range(rng.randrange(1, 5))])
    elif how == "int":
        a.i = rng.choice(INTS)
    elif how == "float":
        a.f = rng.choice([float("nan"), float("inf"), -1e38, 0.0])
    elif how == "string":
        a.s = rng.choice([b"\xff\xfe", b"", b"NOTSET", b"x" * 1000])
    elif how == "ref":
        a.ref_attr_name = "outer"
    else:
        n.attribute.append(copy_message(a))
    return f"attribute: {how} {a.name!r} of {n.op_type}"


def m_subgraph(m, rng):
    graph_types = (AttributeProto.GRAPH, AttributeProto.GRAPHS)
    holders = [(n, a) for n in nodes_of(m) for a in n.attribute if a.type in graph_types]
    if not holders:
        return "subgraph: none"
    n, a = rng.choice(holders)
    how = rng.choice(
        ["drop", "clear-nodes", "clear-outputs", "clear-inputs", "main", "nest", "clear-g"]
    )
    sub = a.g if a.type == AttributeProto.GRAPH else (a.graphs[0] if a.graphs else a.g)
    if how == "drop":
        n.attribute.remove(a)
    elif how == "clear-nodes":
        del sub.node[:]
    elif how == "clear-outputs":
        del sub.output[:]
    elif how == "clear-inputs":
        del sub.input[:]
    elif how == "main":
        sub.CopyFrom(copy_message(m.graph))
    elif how == "nest":
        sub.node.append(
            helper.make_node(
                "If",
                ["cond_in" if sub.input else "x"],
                ["nested"],
                then_branch=copy_message(sub),
                else_branch=copy_message(sub),
            )
        )
    else:
        a.ClearField("g")
    return f"subgraph: {how} {a.name!r} of {n.op_type}"


def m_opset(m, rng):
    how = rng.choice(["version", "version", "drop-default", "dup", "add", "ir"])
    if how == "version" and m.opset_import:
        o = rng.choice(m.opset_import)
        o.version = rng.choice([-1, 0, 1, 6, 7, 9, 11, 13, 17, 18, 21, 23, 99999, 2**62])
    elif how == "drop-default":
        keep = [o for o in m.opset_import if o.domain not in ("", "ai.onnx")]
        del m.opset_import[:]
        m.opset_import.extend(keep)
    elif how == "dup":
        m.opset_import.add(domain="", version=rng.choice([1, 11, 17]))
    elif how == "add":
        m.opset_import.add(domain=rng.choice(DOMAINS[1:]), version=rng.choice([0, 1, 99]))
    else:
        m.ir_version = rng.choice([-1, 0, 1, 3, 4, 7, 11, 99, 2**62])
    return f"opset: {how} -> {[(o.domain, o.version) for o in m.opset_import]} ir={m.ir_version}"


def m_function(m, rng):
    if not m.functions:
        return "function: none"
    f = rng.choice(m.functions)
    how = rng.choice(["recurse", "mutual", "drop", "domain", "empty", "rename-io"])
    if how in ("recurse", "mutual", "rename-io") and not (f.node and f.input):
        return f"function: {how} {f.name!r} has nothing to change"
    if how == "recurse":
        f.node[-1].op_type, f.node[-1].domain = f.name, f.domain
    elif how == "mutual":
        g = copy_message(f)
        g.name = f.name + "2"
        g.node[-1].op_type, g.node[-1].domain = f.name, f.domain
        f.node[-1].op_type, f.node[-1].domain = g.name, g.domain
        m.functions.append(g)
    elif how == "drop":
        m.functions.remove(f)
    elif how == "domain":
        f.domain = rng.choice(DOMAINS)
    elif how == "empty":
        del f.node[:]
    else:
        f.input[0] = "nothing"
    return f"function: {how} {f.name!r}"


def m_metadata(m, rng):
    value = rng.choice(
        [
            "5",
            '"text"',
            "[1, 2]",
            '{"fc": 3}',
            '{"fc": [1]}',
            '{"fc": {"onnx_name": 1}}',
            '{"fc": {"doc_string": null}}',
            "{",
            "[" * 5000,
            "1" * 5000,
            '{"fc": {"winograd": 1}}',
            '{"act": {"low_rank": "x"}}',
        ]
    )
    for p in list(m.metadata_props):
        if p.key == ANNOTATIONS_KEY:
            m.metadata_props.remove(p)
    m.metadata_props.add(key=ANNOTATIONS_KEY, value=value)
    if rng.random() < 0.3:
        m.metadata_props.add(key=ANNOTATIONS_KEY, value="{}")
    return f"metadata: annotations = {value[:30]!r}"
