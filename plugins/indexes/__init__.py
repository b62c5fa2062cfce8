"""Built-in fusionkit plugins: indexes family."""
