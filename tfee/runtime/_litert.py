"""Lean calls of one LiteRT signature, for runtimes that call it per sample.

LiteRT's `SignatureRunner` resizes and re-allocates its subgraph and copies
every output on every call. A stage of the reference network takes 10-150
us at batch 1, so that bookkeeping, paid once per stage, is a visible share
of a cascade's latency. `SignatureCall` re-allocates only when the input
shape changes and fetches only the outputs asked for, through the same
interpreter methods `SignatureRunner` uses; at batch 1 (`row`) it copies
into and reads from the interpreter's own tensors, as a C++ client does.
Where a LiteRT release lacks those methods it falls back to
`SignatureRunner` itself.
"""

import numpy as np

_WRAPPER_METHODS = (
    "GetSubgraphIndexFromSignature",
    "ResizeInputTensor",
    "AllocateTensors",
    "SetTensor",
    "Invoke",
    "GetTensor",
)


class SignatureCall:
    """One signature of a LiteRT `Interpreter`.

    Args:
      interpreter: an `ai_edge_litert.interpreter.Interpreter`.
      name: the signature key.
      input_names: the signature's inputs to feed, in the order `__call__`
        takes them (a single name for a one-input call).
      output_names: the outputs `__call__` returns, in this order.
    """

    def __init__(self, interpreter, name, input_names, output_names):
        runner = interpreter.get_signature_runner(name)
        if isinstance(input_names, str):
            input_names = [input_names]
        details = runner.get_input_details()
        self.inputs_details = [details[n] for n in input_names]
        self.input_details = self.inputs_details[0]
        self.output_details = runner.get_output_details()
        self._runner = runner
        self._input_names = list(input_names)
        self.output_names = list(output_names)
        wrapper = getattr(interpreter, "_interpreter", None)
        self._wrapper = (
            wrapper if all(hasattr(wrapper, m) for m in _WRAPPER_METHODS) else None
        )
        if self._wrapper is not None:
            self._subgraph = self._wrapper.GetSubgraphIndexFromSignature(name)
            self._input_indices = [d["index"] for d in self.inputs_details]
            self._output_indices = [
                self.output_details[n]["index"] for n in self.output_names
            ]
            self._shapes = None
            # Views of the inputs' and outputs' buffers at batch 1, made by
            # `row`; dropped whenever a re-allocation may move the buffers.
            self._row_views = None

    def row(self, *values):
        """Runs the signature on one sample (arrays with a batch axis of 1).

        Returns:
          The chosen outputs as views of the interpreter's buffers: valid
          until this signature runs again (copy what you keep).
        """
        if self._wrapper is None:
            return self(*values)
        if self._row_views is None:
            self._row_views = self._bind_row()
        wrapper = self._wrapper
        inputs, outputs = self._row_views
        for view, value in zip(inputs, values):
            view[...] = value
        wrapper.Invoke(self._subgraph)
        return outputs

    def _allocate(self, shapes):
        """Resizes the inputs to `shapes` and re-allocates, where they changed
        (which may move every buffer: the row views are dropped)."""
        if shapes == self._shapes:
            return
        wrapper, subgraph = self._wrapper, self._subgraph
        for index, shape in zip(self._input_indices, shapes):
            wrapper.ResizeInputTensor(index, np.array(shape, np.int32), False, subgraph)
        wrapper.AllocateTensors(subgraph)
        self._shapes = shapes
        self._row_views = None

    def _bind_row(self):
        """Allocates the subgraph for batch 1; (input views, output views)."""
        wrapper, subgraph = self._wrapper, self._subgraph
        self._allocate([(1,) + tuple(d["shape"][1:]) for d in self.inputs_details])

        def view(index):
            return wrapper.tensor(wrapper, index, subgraph)

        return (
            [view(i) for i in self._input_indices],
            [view(i) for i in self._output_indices],
        )

    def __call__(self, *values):
        """Runs the signature on `values` (one array per input name); returns
        the chosen outputs as a list."""
        if self._wrapper is None:
            outputs = self._runner(**dict(zip(self._input_names, values)))
            return [outputs[n] for n in self.output_names]
        wrapper, subgraph = self._wrapper, self._subgraph
        self._allocate([v.shape for v in values])
        for index, value in zip(self._input_indices, values):
            wrapper.SetTensor(index, value, subgraph)
        wrapper.Invoke(subgraph)
        return [wrapper.GetTensor(i, subgraph) for i in self._output_indices]
