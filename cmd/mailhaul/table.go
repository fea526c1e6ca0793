package main

import "github.com/mattn/go-runewidth"

// The tables of ls, check and batch pad and clip folder and account names
// by the columns a terminal gives them, not by bytes or runes (fmt's %-*s
// counts runes): a name in NFD (macOS writes "Über" as U+0055 U+0308...)
// has combining marks that take no column, and a CJK name's characters
// take two each. go-runewidth (already under progressbar) knows both.

// width is the number of terminal columns s takes.
func width(s string) int { return runewidth.StringWidth(s) }

// pad clips s to n columns and fills it with spaces up to n.
func pad(s string, n int) string { return runewidth.FillRight(clip(s, n), n) }

// clip shortens s to at most n columns, its end replaced by "…".
func clip(s string, n int) string { return runewidth.Truncate(s, n, "…") }
