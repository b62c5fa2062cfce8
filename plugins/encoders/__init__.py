"""Built-in fusionkit plugins: encoders family."""
