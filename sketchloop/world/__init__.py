"""ShapesWorld: vocabulary, scene graphs, prompt parser, layout, renderer and detector."""
