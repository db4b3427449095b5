"""Templates of the contract generator: names, era idioms and layout, vulnerability shapes, family skeletons."""
