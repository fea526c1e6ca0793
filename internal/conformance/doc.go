// Package conformance is one suite of behaviours that every mailhaul
// backend must have, written once and run against every backend on every
// server the tests can start, real or emulated — rclone's fstest/fstests
// habit: a new backend, or a new server that behaves differently, gets the
// whole suite by adding a Target; a new case is written once and asked of
// all of them.
//
// Sinks (sink.go) are asked, through the engine (migrate.Run) and through
// the mailhaul binary:
//
//   - Bytes: LF, CRLF, mixed and bare-CR line endings, NUL bytes, 8-bit
//     headers, a 1 MB line, an empty message, a large message. A Maildir
//     keeps the bytes exactly; an IMAP destination holds their CRLF form.
//   - Flags and keywords (including ones the destination refuses, which
//     are dropped and reported, never failing the message) and internal
//     dates.
//   - Folder names: nested, non-ASCII, holding the other side's separator,
//     colliding after translation, overlong, traversal attempts. Every
//     source folder lands in a folder of its own and nothing is lost.
//   - Special use, including two source folders that claim one use: they
//     are never merged.
//   - Byte-identical twins and messages without a Message-ID: each copied
//     once; a second run copies nothing.
//   - The Finder: Locate finds a copy written, distinct copies for twins,
//     distinct refs in folders that share a UIDVALIDITY.
//   - --dedupe against what the destination already holds.
//   - A lost state dir: a run with a new checkpoint into a destination an
//     earlier run filled, interrupted at each of its first appends and
//     resumed, copies only what is not there yet.
//   - Storage order: each folder's messages in the source's order.
//   - Crash points: the binary is killed right after each step of the
//     append protocol and resumed; each message ends up exactly once.
//   - Connection resets at random byte counts (network targets), a server
//     that stores an APPEND only after its client died (hook-capable
//     emulated servers): exactly once.
//
// Sources (source.go, pop3source.go) are asked: the read-only guarantee
// (nothing in the store changes: on Dovecot's POP3, not even the \Seen
// flags its IMAP side shows), exact bytes, flags and dates, stable IDs
// across opens. Targets: Maildir, mbox, IMAP on Dovecot and on emulated
// Courier-like and minimal servers, POP3 on Dovecot and on the fake POP3
// server.
//
// A failing case names the backend and the server: subtests are called
// "<case>/<target>", targets "<backend>@<server>".
package conformance
