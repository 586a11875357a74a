"""A model's life: training, the decision that crowns a champion, tracking, the card and reports."""
