"""Contract generator templates: names, era idioms and layout, vulnerability shapes, family skeletons."""
