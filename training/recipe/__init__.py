"""The default model's recipe: corpus, tokenizer and the three training stages, end to end."""
