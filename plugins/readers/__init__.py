"""Built-in fusionkit plugins: readers family."""
