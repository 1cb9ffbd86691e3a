"""Analysis of multi-task training: task affinity (:mod:`~polytask.analysis.affinity`: FAFS's
easy/hard agreement and branch grouping; :mod:`~polytask.analysis.lookahead`: TAG's lookahead
affinity measured in a short joint run), task grouping into networks
(:mod:`~polytask.analysis.grouping`), and truth-based metrics of the entire-space simulator
(:mod:`~polytask.analysis.entire_space`). Reports of runs live in :mod:`polytask.report`."""
