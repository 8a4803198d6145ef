"""Decode rules: token masks that constrain what the unified model may write with the world's
vocabulary and geometry. The region grammar (region_grammar.py) keeps an image step's regions
on the lattice, apart, inside the canvas and where the plan's relations hold, with room for
what is still to come (lookahead.py); the phrase grammar (phrase_grammar.py) copies the
prompt's noun phrases and relations into plans. `SamplingConfig` switches each of them."""
