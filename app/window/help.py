"""Help menu content: keyboard shortcuts, the cell equations (torch.nn's), the training
techniques the settings name (forget bias, teacher forcing, bidirectional, IRNN, clipping), and About."""

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


TECHNIQUES_HTML = """
<h2>Techniques</h2>
<p>What the settings below change, and the preset that shows each one.</p>

<h3>Forget-gate bias (LSTM)</h3>
<pre>f_t = σ(W_if x_t + b_if + W_hf h_(t-1) + b_hf)        Forget-gate bias b = b_if + b_hf</pre>
<p>torch draws every bias from U(−1/√H, 1/√H), so the forget gate starts near σ(0) = 0.5 and
the cell state halves every step: c_t keeps little of c_(t−k), and the gradient along the cell
state shrinks by about 0.5 a step. Gers, Schmidhuber &amp; Cummins (2000) and Jozefowicz,
Zaremba &amp; Sutskever (2015) start it at 1 (f ≈ 0.73): the cell keeps its content by
default and the gradient reaches further back from the first step. <b>Forget-gate bias</b>
sets b_if + b_hf of every unit (split evenly: the two always get the same gradient, so the
split never changes training); 0 keeps torch's random biases. Preset: <code>forget-bias</code>.</p>

<h3>Teacher forcing, exposure bias and scheduled sampling</h3>
<p>Teacher-forced, the decoder of a translation model is fed the true previous token at every
step; decoding, it is fed its own. Trained only the first way it never learns to go on from
its own mistakes (<i>exposure bias</i>): one wrong token fed back can derail the rest. The
Training and Decoding panels show held-out token accuracy both ways: teacher-forced (each
token predicted from the true prefix) and free running (greedy decoding, compared position
by position); the gap is what exposure bias costs. Exact match is the same either way:
every token right given the true prefix is exactly when greedy decoding gets the whole
output right. <b>Teacher forcing</b> p feeds the true
token with probability p and the model's own previous choice otherwise, per token (1 =
always teacher forcing, 0 = free running); <b>Forcing schedule</b> lowers it during
training (scheduled sampling, Bengio, Vinyals, Jaitly &amp; Shazeer 2015):</p>
<pre>
constant          p_i = r
linear            p_i = 1 − (1 − r) · i / N
inverse-sigmoid   p_i = r + (1 − r) · k / (k + exp(i / k)),   k ln k = N / 2
</pre>
<p>with r the Teacher forcing setting, i the step and N the budget. Preset:
<code>scheduled-sampling</code>: there the gap narrows, but mostly because the teacher-forced
score falls; within its 1,500 steps free running does not yet improve.</p>

<h3>Bidirectional encoder</h3>
<p>A bidirectional layer (Schuster &amp; Paliwal 1997) runs one recurrence forwards and another,
with weights of its own, backwards over the input, and puts their states side by side:
h_t = [h→_t ; h←_t], so every position sees the whole input, before and after it. Bahdanau
et al. (2014) attended over such states. With <b>Bidirectional encoder</b> on, the encoder
has hidden_size/2 units each way; the decoder starts from both final states side by side.
Hidden state shows the two halves; Gates and Inside the cell show the forward direction.
Preset: <code>bidirectional-encoder</code>.</p>

<h3>IRNN: ReLU with the identity</h3>
<pre>h_t = relu(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh),   W_hh = I, b = 0 at the start</pre>
<p>Le, Jaitly &amp; Hinton (2015): with W_hh the identity and relu, a unit with positive
input just adds it up, and its Jacobian is the identity, so neither the state nor the
gradient shrinks on its own, where tanh squashes both. Initialisation <i>identity</i> with
Spectral radius 1 and Nonlinearity <i>relu</i>. Preset: <code>irnn-adding</code>.</p>

<h3>Choosing the clipping threshold</h3>
<pre>if ‖g‖ &gt; c:  g ← c · g / ‖g‖</pre>
<p>Pascanu, Mikolov &amp; Bengio (2013) choose c from the typical gradient norm: from half to
ten times its average over many updates still converged. The Training panel draws the
running median of ‖∇‖ (dashed), and <b>clip = k × median</b> under Clip norm sets c to k
times it (then Apply: the run goes on). Far below the median, nearly every step is clipped
and clipping acts as a smaller learning rate; far above it, it only stops the rare burst.
Preset: <code>exploding-rnn</code>.</p>
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
