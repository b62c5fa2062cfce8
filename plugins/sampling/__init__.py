"""Built-in fusionkit plugins: sampling family."""
