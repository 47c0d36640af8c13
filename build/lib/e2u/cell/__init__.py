"""One cell of a study: its parameters, its data, its checks, its models, its run and its record."""
