// placeholder until the component has sources
