package dispatch_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// assemblerUses lists the places in one Go file, outside package
// dispatch, that reach for the Assembler: production code must feed a
// Session instead, so that there is one Feed → Next → dispatch loop.
func assemblerUses(fset *token.FileSet, f *ast.File) []string {
	var uses []string
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && id.Name == "dispatch" && (sel.Sel.Name == "NewAssembler" || sel.Sel.Name == "Assembler") {
			uses = append(uses, fset.Position(sel.Pos()).String())
		}
		return true
	})
	return uses
}

// messageJudges lists the exported functions and methods of package
// dispatch's production files that take a Message: any would be a
// second way to judge a frame besides Session.Feed.
func messageJudges(fset *token.FileSet, f *ast.File) []string {
	var out []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || !fn.Name.IsExported() {
			continue
		}
		for _, p := range fn.Type.Params.List {
			t := p.Type
			if st, ok := t.(*ast.StarExpr); ok {
				t = st.X
			}
			if id, ok := t.(*ast.Ident); ok && id.Name == "Message" {
				out = append(out, fset.Position(fn.Pos()).String()+" "+fn.Name.Name)
			}
		}
	}
	return out
}

// TestOneDispatchLoop: no production file outside package dispatch uses
// the Assembler, and package dispatch exports nothing that judges a
// lone Message. (Tests may frame with the Assembler: they cannot judge.)
func TestOneDispatchLoop(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	fset := token.NewFileSet()
	var bad []string
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(root, path)
		if filepath.Dir(rel) == "dispatch" {
			bad = append(bad, messageJudges(fset, f)...)
		} else {
			bad = append(bad, assemblerUses(fset, f)...)
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, files, 50, "the walk found the tree")
	assert.Empty(t, bad, "feed a dispatch.Session instead")
}

// TestOneDispatchLoopCatches is the check's positive control: a file
// that builds its own Assembler, and an exported judge of a Message, are
// both found; a file feeding a Session is not.
func TestOneDispatchLoopCatches(t *testing.T) {
	fset := token.NewFileSet()
	parse := func(src string) *ast.File {
		f, err := parser.ParseFile(fset, "x.go", src, 0)
		require.NoError(t, err)
		return f
	}
	loop := parse(`package x
func f(b []byte) { a := dispatch.NewAssembler(); a.Feed(b); for { m, ok := a.Next(); if !ok { break }; _ = m } }`)
	assert.Len(t, assemblerUses(fset, loop), 1)
	session := parse(`package x
func f(b []byte) { s := dispatch.NewSession(); s.Feed(0, b, nil); _ = s.Finish() }`)
	assert.Empty(t, assemblerUses(fset, session))
	judge := parse(`package dispatch
func Judge(m *Message, x int) Result { return Result{} }
func judge(m *Message) {}
func (s *Session) Feed(t int64, b []byte, fn FrameFunc) {}`)
	assert.Equal(t, []string{"x.go:2:1 Judge"}, messageJudges(fset, judge))
}
