"""A study: the grid and its keys, the work cells share, the executors, reruns, comparisons."""
