"""Analysis of multi-task training: task affinity and grouping (more to come: gates, gradient conflict, reports)."""
