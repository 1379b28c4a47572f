"""TeX in titles and abstracts, shown readably: `$\\alpha$` -> α, `\\mathcal{O}(n\\log n)` -> 𝒪(n log n).

Only `$…$` spans that look like math are touched; what cannot be converted is left as source, and a
lone `$35,000` stays exactly as it is. Pure string work: nothing is ever evaluated.
"""

from __future__ import annotations

import re
import unicodedata

_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ",
    "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "ϕ",
    "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ",
    "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
    "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠", "ne": "≠", "approx": "≈", "sim": "∼",
    "simeq": "≃", "equiv": "≡", "times": "×", "cdot": "·", "pm": "±", "mp": "∓", "infty": "∞",
    "rightarrow": "→", "to": "→", "leftarrow": "←", "Rightarrow": "⇒", "mapsto": "↦", "in": "∈",
    "notin": "∉", "subset": "⊂", "subseteq": "⊆", "cup": "∪", "cap": "∩", "forall": "∀", "exists": "∃",
    "partial": "∂", "nabla": "∇", "sum": "∑", "prod": "∏", "int": "∫", "ell": "ℓ", "dots": "…",
    "ldots": "…", "cdots": "⋯", "log": "log", "exp": "exp", "ln": "ln", "min": "min", "max": "max",
    "sqrt": "√", "langle": "⟨", "rangle": "⟩", "mid": "|", "lVert": "‖", "rVert": "‖", "ast": "∗",
    "star": "⋆", "circ": "∘", "emptyset": "∅", "varnothing": "∅", "top": "⊤", "perp": "⊥",
    "{": "{", "}": "}", "%": "%", "&": "&", "_": "_", ",": " ", ";": " ", "!": "", " ": " ", "quad": " ",
}
_CAL = {c: chr(0x1D49C + i) for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
_CAL.update({"B": "ℬ", "E": "ℰ", "F": "ℱ", "H": "ℋ", "I": "ℐ", "L": "ℒ", "M": "ℳ", "R": "ℛ"})
_BB = {"R": "ℝ", "N": "ℕ", "Z": "ℤ", "Q": "ℚ", "C": "ℂ", "E": "𝔼", "P": "ℙ"}
_SUP = str.maketrans("0123456789+-=()niT", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵀ")
_SUB = str.maketrans("0123456789+-=()aeijkmnoprstx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑᵢⱼₖₘₙₒₚᵣₛₜₓ")
_ACCENT = {"tilde": "\u0303", "hat": "\u0302", "bar": "\u0304", "vec": "\u20d7", "dot": "\u0307"}

# A math span: $...$ on one line, not starting with a space or digit-then-comma money pattern.
_MATH = re.compile(r"\$(?=[^\s$])([^$\n]{1,200}?)(?<=[^\s\\])\$")


def _script(body: str, table: dict[int, int], mark: str) -> str:
    converted = body.translate(table)
    if all(ord(c) in table.values() or c == " " for c in converted):
        return converted
    return f"{mark}({body})" if len(body) > 1 else f"{mark}{body}"


def convert_math(src: str) -> str | None:
    """Unicode for one math span, or None when something is left that only TeX understands."""
    s = src.replace("\\{", "\x01").replace("\\}", "\x02")  # literal braces survive the grouping pass
    s = re.sub(r"\\(?:text|mathrm|mathit|mathbf|operatorname|textbf|textit|mathsf)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\mathcal\{([A-Z])\}", lambda m: _CAL[m.group(1)], s)
    s = re.sub(r"\\mathbb\{([A-Z])\}", lambda m: _BB.get(m.group(1), m.group(1)), s)
    s = re.sub(r"\\(tilde|hat|bar|vec|dot)\{(\w)\}", lambda m: m.group(2) + _ACCENT[m.group(1)], s)
    s = re.sub(r"\\(tilde|hat|bar|vec|dot)(?![A-Za-z])\s*(\w)", lambda m: m.group(2) + _ACCENT[m.group(1)], s)
    s = re.sub(r"\\left|\\right|\\big|\\Big|\\bigg", "", s)
    s = re.sub(r"\\([A-Za-z]+|[%&_,;! ])", _symbol, s)
    s = re.sub(r"\^\{([^{}]*)\}|\^(\w)", lambda m: _script(m.group(1) or m.group(2), _SUP, "^"), s)
    s = re.sub(r"_\{([^{}]*)\}|_(\w)", lambda m: _script(m.group(1) or m.group(2), _SUB, "_"), s)
    s = re.sub(r"\{([^{}]*)\}", r"\1", s)
    if "\\" in s or "{" in s or "}" in s:
        return None
    s = s.replace("\x01", "{").replace("\x02", "}")
    return unicodedata.normalize("NFC", re.sub(r"\s+", " ", s).strip())


def _symbol(m: re.Match[str]) -> str:
    name = m.group(1)
    if name not in _SYMBOLS:
        return m.group(0)
    out = _SYMBOLS[name]
    return f" {out} " if name.isalpha() and out.isalpha() and len(out) > 1 else out  # log, exp, min


def readable(text: str) -> str:
    """Text with convertible `$…$` math replaced by Unicode; everything else unchanged."""
    if "$" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        body = m.group(1)
        if re.fullmatch(r"[\d.,]+(?:\s.*)?", body):  # "$35,000 and $" : money, not math
            return m.group(0)
        converted = convert_math(body)
        return converted if converted is not None else m.group(0)

    return _MATH.sub(one, text)
