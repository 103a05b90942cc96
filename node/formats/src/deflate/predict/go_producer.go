// go_producer — test-time producer for the go-N predictor models: stdin to stdout through Go's compress/gzip,
// so the tests compare the model with the real standard library, not a re-implementation.
//
//	go_producer [-level N] [-write N] [-flush N] < IN > OUT.gz
//
// -level is the compress/gzip level (-1 = default, 6); -write N hands the data to the writer in N-byte Write
// calls (0: one call for everything); -flush N calls Flush after every N bytes written (0: never).
// Built and run by node/src/deflate/predict/go.rs's tests (Debian package golang-go); standard library only.
package main

import (
	"bufio"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	level := flag.Int("level", gzip.DefaultCompression, "compression `level` (-2..9)")
	write := flag.Int("write", 0, "size of each Write call (0: one call)")
	flush := flag.Int("flush", 0, "Flush after every `N` bytes (0: never)")
	flag.Parse()
	if err := run(*level, *write, *flush); err != nil {
		fmt.Fprintln(os.Stderr, "go_producer:", err)
		os.Exit(1)
	}
}

func run(level, write, flush int) error {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	z, err := gzip.NewWriterLevel(out, level)
	if err != nil {
		return err
	}
	sinceFlush := 0
	for len(data) > 0 {
		n := len(data)
		if write > 0 && write < n {
			n = write
		}
		if flush > 0 && flush-sinceFlush < n {
			n = flush - sinceFlush
		}
		if _, err := z.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
		sinceFlush += n
		if flush > 0 && sinceFlush == flush {
			if err := z.Flush(); err != nil {
				return err
			}
			sinceFlush = 0
		}
	}
	if err := z.Close(); err != nil {
		return err
	}
	return out.Flush()
}
