"""The pipeline diagram of README.md (docs/pipeline.svg), drawn from `create_pipeline` itself.

    .venv/bin/python -m pipeline.diagram          # rewrites docs/pipeline.svg

The nodes, their output artifact types and the edges are read from the TFX pipeline
object the runners execute (`reference_pipeline`: the local pipeline's shape, with
placeholder paths). tests/test_diagram.py draws it again and compares it with the
committed file, so the picture cannot drift from the code.
"""
from __future__ import annotations

import dataclasses
import html
import os
import sys
from typing import Dict, List, Sequence, Tuple

from pipeline import stages

SVG_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "pipeline.svg")
BOX_WIDTH, LINE_HEIGHT, COLUMN_GAP, ROW_GAP, MARGIN = 200, 16, 46, 24, 20
ARCH_SPACE = 56  # above the first row, for the edges that skip columns


@dataclasses.dataclass(frozen=True)
class Node:
  node_id: str
  title: str           # e.g. "data" (the --from_stage name) or "latest blessed model"
  outputs: Tuple[str, ...]  # artifact type names


@dataclasses.dataclass(frozen=True)
class Graph:
  nodes: Tuple[Node, ...]  # in the pipeline's (topological) order
  edges: Tuple[Tuple[str, str], ...]  # (producer node id, consumer node id)


def graph_of(pipeline) -> Graph:
  """Nodes (with output types) and producer -> consumer edges of a TFX pipeline."""
  names = {stage.node_id: stage.name for stage in stages.STAGES}
  nodes, edges = [], []
  for component in pipeline.components:
    outputs = tuple(sorted({channel.type.TYPE_NAME.split(".")[-1]
                            for channel in component.outputs.values()}))
    title = names.get(component.id, "blessed model of earlier runs")
    nodes.append(Node(component.id, title, outputs))
    # A resolver's inputs are queries on MLMD (earlier runs), not channels of this run.
    producers = {getattr(c, "producer_component_id", None) for c in component.inputs.values()}
    for producer in sorted(producers - {None}):
      edges.append((producer, component.id))
  return Graph(tuple(nodes), tuple(edges))


def layers(graph: Graph) -> Dict[str, int]:
  """Column of each node: the longest path from the first node; a later node without
  inputs (the resolver) sits just before its first consumer."""
  column = {}
  for node in graph.nodes:  # topological order
    parents = [p for p, c in graph.edges if c == node.node_id]
    column[node.node_id] = 1 + max((column[p] for p in parents), default=-1)
  for node in graph.nodes[1:]:
    children = [c for p, c in graph.edges if p == node.node_id]
    if not any(c == node.node_id for _, c in graph.edges) and children:
      column[node.node_id] = min(column[c] for c in children) - 1
  return column


def _box_height(node: Node) -> int:
  return LINE_HEIGHT * (2 + len(node.outputs)) + 10


def to_svg(graph: Graph) -> str:
  """A left-to-right SVG: one column per layer, arrows from producer to consumer."""
  column = layers(graph)
  rows: Dict[int, List[Node]] = {}
  for node in sorted(graph.nodes, key=lambda n: n.title not in stages.NAMES):  # stages on top
    rows.setdefault(column[node.node_id], []).append(node)
  row_height = max(_box_height(n) for n in graph.nodes) + ROW_GAP
  position = {}
  for col, members in rows.items():
    for row, node in enumerate(members):
      position[node.node_id] = (MARGIN + col * (BOX_WIDTH + COLUMN_GAP),
                                MARGIN + 30 + ARCH_SPACE + row * row_height)
  width = MARGIN * 2 + len(rows) * (BOX_WIDTH + COLUMN_GAP) - COLUMN_GAP
  height = MARGIN * 2 + 30 + ARCH_SPACE + max(len(m) for m in rows.values()) * row_height - ROW_GAP
  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>'
           '</defs>',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{MARGIN}" y="{MARGIN + 12}" font-size="14" font-weight="bold">'
           'The TFX pipeline (drawn from create_pipeline by pipeline/diagram.py)</text>']
  by_id = {n.node_id: n for n in graph.nodes}
  for producer, consumer in graph.edges:
    parts.append(_edge(position[producer], _box_height(by_id[producer]), position[consumer],
                       column[consumer] - column[producer]))
  for node in graph.nodes:
    parts.extend(_box(node, *position[node.node_id]))
  parts.append("</svg>")
  return "\n".join(parts) + "\n"


def _edge(start: Tuple[int, int], start_height: int, end: Tuple[int, int], span: int) -> str:
  if span <= 1:  # to the next column: side to side
    x0, y0 = start[0] + BOX_WIDTH, start[1] + min(start_height // 2, 24)
    x1, y1 = end[0], end[1] + 24
    mid = (x0 + x1) / 2
    path = f"M{x0},{y0} C{mid},{y0} {mid},{y1} {x1},{y1}"
  else:  # skipping columns: an arch from top to top, higher for longer spans
    x0, y0 = start[0] + BOX_WIDTH - 14 * span, start[1]
    x1, y1 = end[0] + 10 * span, end[1]
    top = min(y0, y1) - 16 * span
    path = f"M{x0},{y0} C{x0},{top} {x1},{top} {x1},{y1}"
  return (f'<path d="{path}" fill="none" stroke="#555" stroke-width="1.3" '
          'marker-end="url(#arrow)"/>')


def _box(node: Node, x: int, y: int) -> Sequence[str]:
  h = _box_height(node)
  fill = "#e8f0fe" if node.title in stages.NAMES else "#f1f3f4"
  lines = [f'<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{h}" rx="6" fill="{fill}" '
           'stroke="#1a73e8" stroke-width="1.2"/>',
           f'<text x="{x + 8}" y="{y + 17}" font-weight="bold">{html.escape(node.node_id)}</text>',
           f'<text x="{x + 8}" y="{y + 17 + LINE_HEIGHT}" fill="#444">'
           f'{html.escape(node.title)}</text>']
  for k, output in enumerate(node.outputs):
    lines.append(f'<text x="{x + 14}" y="{y + 17 + LINE_HEIGHT * (2 + k)}" fill="#0b5394">'
                 f'&#8594; {html.escape(output)}</text>')
  return lines


def reference_pipeline():
  """The local pipeline's shape (placeholder paths; what `make run` builds)."""
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  from retinanet import configs  # pylint: disable=g-import-not-at-top
  dataset = pipeline_lib.DatasetPaths("train.json", "train", "val.json", "val")
  orchestration = pipeline_lib.Orchestration(
      code_versions={stage.node_id: "v" for stage in stages.STAGES})
  return pipeline_lib.create_pipeline(
      pipeline_name="retinanet", pipeline_root="pipeline_root", dataset=dataset,
      config=configs.load_named_config("sample/tiny"),
      serving=pipeline_lib.Serving(serving_dir="serving"), orchestration=orchestration)


def main(argv: Sequence[str] = ()) -> int:
  path = argv[0] if argv else SVG_PATH
  with open(path, "w") as f:
    f.write(to_svg(graph_of(reference_pipeline())))
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
