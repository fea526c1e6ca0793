package main

import "github.com/mattn/go-runewidth"

// The tables of ls, check and batch pad and clip folder and account names
// by the columns a terminal gives them, not by bytes or runes (fmt's %-*s
// counts runes): a name in NFD (macOS writes "Über" as U+0055 U+0308...)
// has combining marks that take no column, and a CJK name's characters
// take two each. go-runewidth (already under progressbar) knows both.

// columns counts every character of ambiguous East Asian width ("…"
// among them) as one column, whatever the locale: go-runewidth's default
// counts them as two under a CJK locale, which would make a table's
// width depend on $LANG.
var columns = &runewidth.Condition{EastAsianWidth: false}

// width is the number of terminal columns s takes.
func width(s string) int { return columns.StringWidth(s) }

// pad clips s to n columns and fills it with spaces up to n.
func pad(s string, n int) string { return columns.FillRight(clip(s, n), n) }

// clip shortens s to at most n columns, its end replaced by "…".
func clip(s string, n int) string { return columns.Truncate(s, n, "…") }
