package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mailhaul/mailhaul/migrate"
)

type lsFolder struct {
	Name       string `json:"name"`
	SpecialUse string `json:"special_use,omitempty"`
	NoSelect   bool   `json:"noselect,omitempty"`
	Messages   int    `json:"messages"`
	Bytes      int64  `json:"bytes"`
	// Expunged counts the messages the source already treats as gone
	// (Thunderbird's deleted but not compacted), which copy leaves out
	// unless --include-deleted: not in Messages and Bytes.
	Expunged int    `json:"expunged,omitempty"`
	Error    string `json:"error,omitempty"`
}

func lsCommand(g *globalFlags) *cobra.Command {
	im := &imapFlags{}
	cmd := &cobra.Command{
		Use:     "ls SRC",
		Short:   "List the folders of SRC with message counts and total sizes",
		Example: "  mailhaul ls maildir:~/Maildir",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ep, err := parseEndpoint(args[0])
			if err != nil {
				return usageErr("%v", err)
			}
			if err := noLoginFlags(im, ep); err != nil {
				return err
			}
			ctx, stop := signalContext(g.log)
			defer stop()
			src, err := openSource(ctx, ep, endpointEnv{g: g, im: im, warn: func(err error) { g.log.Warn(err.Error()) }, info: func(s string) { g.log.Info(s) }})
			if err != nil {
				return &exitError{exitFatal, err}
			}
			defer src.Close()
			mbs, err := src.Mailboxes(ctx)
			if errors.Is(err, migrate.ErrNothingSelected) {
				return &exitError{exitUsage, err}
			}
			if err != nil {
				return &exitError{exitFatal, err}
			}
			var out []lsFolder
			failed := false
			for _, mb := range mbs {
				f := lsFolder{Name: mb.Name, SpecialUse: mb.SpecialUse, NoSelect: mb.NoSelect}
				if !mb.NoSelect {
					err := src.List(ctx, mb, func(m migrate.Message) error {
						if m.Expunged {
							f.Expunged++
							return nil
						}
						f.Messages++
						if m.Size > 0 {
							f.Bytes += m.Size
						}
						return nil
					})
					if err != nil {
						if migrate.Classify(err) != migrate.Skip {
							return &exitError{exitFatal, err}
						}
						f.Error = err.Error()
						failed = true
					}
				}
				out = append(out, f)
			}
			if g.json {
				if err := writeJSON[lsFolder](os.Stdout, nil, "", out); err != nil {
					return &exitError{exitFatal, fmt.Errorf("write folder list: %w", err)}
				}
			} else {
				nameW := len("FOLDER")
				for _, f := range out {
					nameW = max(nameW, min(60, width(f.Name)))
				}
				row := func(name, use string, n int, size int64) {
					fmt.Printf("%s %-10s %10d %12s\n", pad(name, nameW), use, n, humanBytes(size))
				}
				fmt.Printf("%s %-10s %10s %12s\n", pad("FOLDER", nameW), "USE", "MESSAGES", "SIZE")
				var n int
				var b int64
				for _, f := range out {
					use := f.SpecialUse
					if f.NoSelect {
						use = `\Noselect`
					}
					row(f.Name, use, f.Messages, f.Bytes)
					if f.Error != "" {
						fmt.Printf("  error: %s\n", f.Error)
					}
					if f.Expunged > 0 {
						fmt.Printf("  and %s deleted but not compacted (not counted; copy --include-deleted copies them)\n", plural(f.Expunged, "message"))
					}
					n += f.Messages
					b += f.Bytes
				}
				row("TOTAL", "", n, b)
			}
			if failed {
				return &exitError{exitSkipped, nil}
			}
			return nil
		},
	}
	addIMAPSourceFlags(cmd.Flags(), im)
	return cmd
}
