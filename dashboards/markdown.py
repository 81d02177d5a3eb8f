"""Text from the store as Markdown that renders as itself.

Streamlit renders Markdown (GitHub-flavoured, plus KaTeX `$math$`, `:emoji:` and `:material/icon:` shortcodes and
`:color[...]` directives) in st.markdown, st.caption, st.title/subheader, st.info/warning, widget labels and every
cell of st.table (not its column names). Any text that comes from stored data (pool names, run ids, suites,
reasons, evidence, errors, item outputs) goes through `md()` before it meets one of those: every character that
can start markup is backslash-escaped (CommonMark lets any ASCII punctuation be), a colon is followed by a word
joiner (U+2060, invisible) so that no shortcode or directive can form, and a line cannot start a list, a heading
or a rule. Raw HTML is escaped too (`\\<` shows it). st.dataframe, chart titles and tooltips do not render
Markdown and take text as it is.
"""

from __future__ import annotations

import re

import pandas as pd

WORD_JOINER = "\u2060"
_MARKUP = re.compile(r"([\\`*_\[\]<>#~$|&{}!])")
_BULLET = re.compile(r"^(\s*)([-+=])(?=[\s\-=]|$)", re.MULTILINE)  # a list item, a rule or a setext heading
_ORDERED = re.compile(r"^(\s*\d+)([.)])(?=\s|$)", re.MULTILINE)  # an ordered list item


def md(value: object) -> str:
    """`value` as Markdown text that renders exactly as str(value) reads (a word joiner after each colon)."""
    text = _MARKUP.sub(r"\\\1", str(value))
    text = _ORDERED.sub(r"\1\\\2", _BULLET.sub(r"\1\\\2", text))
    return text.replace(":", ":" + WORD_JOINER)


def md_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame for st.table: every text cell through md() (its column names are shown as they are); numbers,
    None and NaN as they are."""
    return frame.map(lambda v: md(v) if isinstance(v, str) else v)
