"""Evaluation: benchmark folders, generation inputs, the metrics (interactivity, lip sync per
identity, identity similarity, who speaks, FVD), their store and the promotion gate."""
