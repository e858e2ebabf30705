"""Help menu content: keyboard shortcuts, the cell equations (torch.nn's), and About."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from app.window.transport import SHORTCUTS

EQUATIONS_HTML = """
<h2>Cell equations</h2>
<p>Exactly torch.nn's (<code>nn.RNN</code>, <code>nn.LSTM</code>, <code>nn.GRU</code>);
σ is the logistic sigmoid and * the elementwise product. Weight names follow torch:
<code>weight_ih_l{k}</code>, <code>weight_hh_l{k}</code>, <code>bias_ih_l{k}</code>,
<code>bias_hh_l{k}</code>; gate blocks are stacked in the order i, f, g, o and r, z, n.</p>

<h3>rnn</h3>
<pre>h_t = tanh(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh)        (or relu)</pre>

<h3>lstm</h3>
<pre>
i_t = σ(W_ii x_t + b_ii + W_hi h_(t-1) + b_hi)          input gate
f_t = σ(W_if x_t + b_if + W_hf h_(t-1) + b_hf)          forget gate
g_t = tanh(W_ig x_t + b_ig + W_hg h_(t-1) + b_hg)       cell candidate
o_t = σ(W_io x_t + b_io + W_ho h_(t-1) + b_ho)          output gate
c_t = f_t * c_(t-1) + i_t * g_t                          cell state
h_t = o_t * tanh(c_t)
</pre>

<h3>gru</h3>
<pre>
r_t = σ(W_ir x_t + b_ir + W_hr h_(t-1) + b_hr)          reset gate
z_t = σ(W_iz x_t + b_iz + W_hz h_(t-1) + b_hz)          update gate
n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_(t-1) + b_hn))   new gate
h_t = (1 - z_t) * n_t + z_t * h_(t-1)
</pre>
<p>Note the GRU's reset gate multiplies <i>W_hn h + b_hn</i>, inside the tanh; and z near 1
<i>keeps</i> the old state.</p>

<h3>Backpropagation through time</h3>
<pre>
rnn, gru: ∂L/∂h_t = ∂L_t/∂h_t + (∂h_(t+1)/∂h_t)ᵀ ∂L/∂h_(t+1)
lstm:     ∂L/∂h_t = ∂L_t/∂h_t + W_hhᵀ δ_(t+1)          δ_(t+1): the gradient at step t+1's gate pre-activations
          ∂L/∂c_t = ∂L/∂h_t * o_t * (1 - tanh²(c_t)) + f_(t+1) * ∂L/∂c_(t+1)
‖∂h_T/∂h_t‖ ≤ (γ σ_max(W_hh))^(T-t)       γ = max |φ'|: 1 for tanh and relu, 1/4 for sigmoid
</pre>
<p>The LSTM's cell-state path multiplies the gradient by the forget gate alone, with no
matrix and no squashing derivative: with f near 1 it rides c back almost unchanged (the
constant error carousel). Gradients through time draws ‖∂L/∂c_t‖ beside ‖∂L/∂h_t‖.</p>
<p>σ_max(W_hh) &lt; 1/γ is sufficient for gradients to vanish; σ_max &gt; 1/γ is necessary,
not sufficient, for them to explode (Pascanu, Mikolov &amp; Bengio 2013). The rate at which
they actually shrink or grow is the <b>Jacobian-product rate</b>: the finite-time Lyapunov
exponent of the product of step Jacobians ∂h_(s+1)/∂h_s along the trajectory the network
runs (a vector carried back and renormalised every step; its geometric rate). The mean of
log ‖J_t‖ is only an upper bound, and ρ(W_hh)·rms(φ') only a mean-field estimate, valid for
random weights.</p>
<p>Truncated BPTT with chunk k stops the backward sum every k steps: no gradient crosses a
chunk edge, so the weights get no direct signal about dependencies longer than the chunk.
The forward state still carries information across chunks, and what the network learns to
keep for shorter spans can carry further.</p>
"""

ABOUT_HTML = """
<h2>RNN Explorer</h2>
<p>A desktop lab for seeing how recurrent networks learn: train an RNN, LSTM or GRU on a
small task and watch the loss, the hidden state, the gates, the gradients through time and
the spectrum of the recurrent weights, step by step and time step by time step.</p>
<p>Built on PyTorch, NumPy, PySide6 (Qt) and pyqtgraph. MIT licence.</p>
"""


def shortcuts_html() -> str:
    rows = "".join(f"<tr><td><b>{keys}</b></td><td>&nbsp;&nbsp;{what}</td></tr>" for keys, what in SHORTCUTS)
    return f"<h2>Keyboard shortcuts</h2><table cellpadding='3'>{rows}</table>" \
           "<p>Click a row of the hidden-state heatmap to plot that unit; shift-click adds units. " \
           "Drag in a plot to pan, scroll to zoom.</p>"


class HelpDialog(QDialog):
    """A non-modal dialog showing one page of rich text."""

    def __init__(self, title: str, html: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName(f"help-{title.lower().replace(' ', '-')}")
        self.resize(720, 620)
        layout = QVBoxLayout(self)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setHtml(html)
        layout.addWidget(self.browser)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)
