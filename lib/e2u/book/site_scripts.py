"""The scripts the site check (`site_check`) runs inside a page, in the browser: what the page shows, whether its
tables and figures fit, and which of its equations were left untypeset or shown as TeX."""

PAGE_FACTS = """
return {
  images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  text: document.body.innerText, html: document.documentElement.outerHTML,
};
"""

# Whether every table and figure of the page's text fits the viewport: each is either narrower than the page or held
# by a scroll container (overflow-x auto or scroll, the element itself included) that fits the page. A table or
# figure fails when a container that hides its overflow cuts it (overflow-x hidden or clip), or when it runs off
# the page's edge with nothing to scroll it; the page fails when it is wider than the viewport. Returns
# [kind, width, what] per failure; `what` is "cut" (with the container's width), "off" or "scroller off", and one
# ["page", width, "wide"] when the page itself is too wide.
FIT = """
const vw = document.documentElement.clientWidth;
const text = document.querySelector('article') || document.querySelector('main') || document.body;
const found = [];
const scrolls = o => o === 'auto' || o === 'scroll';
const hides = o => o === 'hidden' || o === 'clip';
const replaced = ['IMG', 'VIDEO', 'IFRAME', 'CANVAS'];
for (const el of text.querySelectorAll('table, img, figure, video, iframe, canvas')) {
  if (!el.checkVisibility()) continue;
  const box = el.getBoundingClientRect();
  if (box.width === 0) continue;
  const kind = el.tagName === 'TABLE' ? 'table' : 'figure';
  const width = Math.round(Math.max(box.width, replaced.includes(el.tagName) ? 0 : el.scrollWidth));
  let verdict = null;
  for (let node = el; node && !verdict; node = node.parentElement) {
    const overflow = getComputedStyle(node).overflowX;
    const rect = node.getBoundingClientRect();
    if (scrolls(overflow)) {
      verdict = rect.left < -1 || rect.right > vw + 1 ? [kind, width, 'scroller off'] : 'held';
    } else if (hides(overflow) && node !== el && (box.left < rect.left - 1 || box.right > rect.right + 1)) {
      verdict = [kind, width, 'cut', Math.round(rect.width)];
    } else if (hides(overflow) && node === el && !replaced.includes(el.tagName) && el.scrollWidth > el.clientWidth + 1) {
      verdict = [kind, width, 'cut', Math.round(box.width)];
    }
  }
  if (verdict === null && (box.left < -1 || box.right > vw + 1)) verdict = [kind, width, 'off'];
  if (verdict && verdict !== 'held') found.push(verdict);
}
const page = document.documentElement.scrollWidth;
if (page > vw + 1) found.push(['page', page, 'wide']);
return {width: vw, found: found};
"""

# Sphinx writes each equation as an element of class `math` holding its TeX; MathJax puts an `mjx-container` in it
# (KaTeX a `.katex`), and an error box (`mjx-merror`, `.katex-error`) where the TeX does not parse.
UNTYPESET = """
return Array.from(document.querySelectorAll('.math'))
  .filter(m => !m.querySelector('mjx-container, .katex') || m.querySelector('mjx-merror, .katex-error'))
  .map(m => m.textContent.trim().slice(0, 80));
"""

# TeX a reader would see as text: a control word or a math delimiter in a visible text node outside code.
RAW_TEX = r"""
const tex = /\\[A-Za-z]{2,}|\\[()\[\]]|\$\$/;
const skip = 'pre, code, script, style, textarea, mjx-container, .katex, .highlight';
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const found = [];
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const parent = node.parentElement;
  if (!parent || parent.closest(skip)) continue;
  // pandas writes a line break, a tab or a carriage return inside a table cell as \\n, \\t or \\r: not TeX
  const text = parent.closest('td, th') ? node.textContent.replace(/\\[ntr]/g, ' ') : node.textContent;
  if (!tex.test(text) || !parent.checkVisibility()) continue;
  found.push(node.textContent.trim().slice(0, 80));
}
return found;
"""
