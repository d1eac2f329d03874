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
    """One signature of a LiteRT `Interpreter` with one input.

    Args:
      interpreter: an `ai_edge_litert.interpreter.Interpreter`.
      name: the signature key.
      input_name: the signature's input to feed.
      output_names: the outputs `__call__` returns, in this order.
    """

    def __init__(self, interpreter, name, input_name, output_names):
        runner = interpreter.get_signature_runner(name)
        self.input_details = runner.get_input_details()[input_name]
        self.output_details = runner.get_output_details()
        self._runner = runner
        self._input_name = input_name
        self._output_names = list(output_names)
        wrapper = getattr(interpreter, "_interpreter", None)
        self._wrapper = (
            wrapper if all(hasattr(wrapper, m) for m in _WRAPPER_METHODS) else None
        )
        if self._wrapper is not None:
            self._subgraph = self._wrapper.GetSubgraphIndexFromSignature(name)
            self._input_index = self.input_details["index"]
            self._output_indices = [
                self.output_details[n]["index"] for n in self._output_names
            ]
            self._shape = None

    def __call__(self, values):
        """Runs the signature on `values`; returns the chosen outputs as a list."""
        if self._wrapper is None:
            outputs = self._runner(**{self._input_name: values})
            return [outputs[n] for n in self._output_names]
        wrapper, subgraph = self._wrapper, self._subgraph
        if values.shape != self._shape:
            wrapper.ResizeInputTensor(
                self._input_index, np.array(values.shape, np.int32), False, subgraph
            )
            wrapper.AllocateTensors(subgraph)
            self._shape = values.shape
        wrapper.SetTensor(self._input_index, values, subgraph)
        wrapper.Invoke(subgraph)
        return [wrapper.GetTensor(i, subgraph) for i in self._output_indices]
