package format_test

import (
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"squeeze/format"
)

// The smallest useful artifact, byte by byte: docs/FORMAT.md shows and explains this dump.
func Example_layout() {
	dir, err := os.MkdirTemp("", "format-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "hello.sqz")

	w, err := format.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Abort()
	if err := w.Add("text", []byte("hello"), format.SectionOptions{}); err != nil {
		log.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		log.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(hex.Dump(data))
	// Output:
	// 00000000  89 53 51 5a 0d 0a 1a 0a  01 00 00 00 00 00 00 00  |.SQZ............|
	// 00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|
	// 00000020  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|
	// 00000030  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|
	// 00000040  68 65 6c 6c 6f 01 00 00  00 04 74 65 78 74 00 40  |hello.....text.@|
	// 00000050  00 00 00 00 00 00 00 05  00 00 00 00 00 00 00 05  |................|
	// 00000060  00 00 00 00 00 00 00 4c  bb 71 9a 45 00 00 00 00  |.......L.q.E....|
	// 00000070  00 00 00 26 00 00 00 00  00 00 00 d7 df 28 5d 01  |...&.........(].|
	// 00000080  00 00 00 89 53 51 5a 0d  0a 1a 0a                 |....SQZ....|
}

// Writing and reading a section payload with Encoder and Decoder.
func ExampleDecoder() {
	var e format.Encoder
	e.Text("gocode-22m")
	e.Uvarint(4096)
	e.Int32s([]int32{1, 15043, 287})

	d := format.NewDecoder("header", e.Bytes())
	model := d.Text()
	tokens := d.Uvarint()
	ids := d.Int32s()
	if err := d.Finish(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(model, tokens, ids)

	d = format.NewDecoder("header", e.Bytes()[:12])
	d.Text()
	d.Uvarint()
	fmt.Println(d.Finish())
	// Output:
	// gocode-22m 4096 [1 15043 287]
	// format: section "header" data at offset 11: reading uvarint: the data ends inside a uvarint: artifact is corrupt
}
