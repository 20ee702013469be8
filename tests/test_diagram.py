"""README's pipeline diagram (docs/pipeline.svg) is the pipeline create_pipeline builds."""
from pipeline import diagram, stages


def test_the_committed_diagram_is_drawn_from_the_current_pipeline():
  drawn = diagram.to_svg(diagram.graph_of(diagram.reference_pipeline()))
  with open(diagram.SVG_PATH) as f:
    committed = f.read()
  assert drawn == committed, (
      "docs/pipeline.svg is out of date: run .venv/bin/python -m pipeline.diagram")


def test_the_diagram_has_every_stage_and_the_stage_tables_edges():
  graph = diagram.graph_of(diagram.reference_pipeline())
  ids = [node.node_id for node in graph.nodes]
  assert set(ids) >= {stage.node_id for stage in stages.STAGES}
  for stage in stages.STAGES:
    producers = {p for p, c in graph.edges if c == stage.node_id} - {stages.BASELINE_RESOLVER}
    assert producers == set(stages.upstream_node_ids(stage.name)), stage.name
  assert (stages.BASELINE_RESOLVER, stages.EVALUATOR.node_id) in graph.edges
  svg = diagram.to_svg(graph)
  assert all(f">{node_id}<" in svg for node_id in ids)
