"""The web demo (`sketchloop serve`): app.py and its page, index.html."""
