"""Lean calls of one LiteRT signature, for runtimes that call it per sample.

LiteRT's `SignatureRunner` resizes and re-allocates its subgraph and copies
every output on every call. A stage of the reference network takes about
100 us at batch 1, so that bookkeeping, paid once per stage, is a visible
share of a cascade's latency. `SignatureCall` re-allocates only when the
input shape changes and fetches only the outputs asked for, through the same
interpreter methods `SignatureRunner` uses; where a LiteRT release lacks
them it falls back to `SignatureRunner` itself.
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

    def __call__(self, *values):
        """Runs the signature on `values` (one array per input name); returns
        the chosen outputs as a list."""
        if self._wrapper is None:
            outputs = self._runner(**dict(zip(self._input_names, values)))
            return [outputs[n] for n in self.output_names]
        wrapper, subgraph = self._wrapper, self._subgraph
        shapes = [v.shape for v in values]
        if shapes != self._shapes:
            for index, shape in zip(self._input_indices, shapes):
                wrapper.ResizeInputTensor(
                    index, np.array(shape, np.int32), False, subgraph
                )
            wrapper.AllocateTensors(subgraph)
            self._shapes = shapes
        for index, value in zip(self._input_indices, values):
            wrapper.SetTensor(index, value, subgraph)
        wrapper.Invoke(subgraph)
        return [wrapper.GetTensor(i, subgraph) for i in self._output_indices]
