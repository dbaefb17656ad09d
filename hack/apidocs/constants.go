package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// constFile is the exported constants of one Go file, in source order.
type constFile struct {
	name   string
	title  string
	groups []constGroup
}

// constGroup is one const declaration: grouped ones carry a doc for the group, single ones are
// shown together in one table.
type constGroup struct {
	doc     string
	grouped bool
	consts  []constant
}

type constant struct {
	name, value, doc string
}

// fileTitles names the sections of the known files; fileOrder sorts them.
var (
	fileOrder  = []string{"groupversion_info.go", "cluster_types.go", "machine_types.go", "host_types.go"}
	fileTitles = map[string]string{
		"groupversion_info.go": "Shared by every kind",
		"cluster_types.go":     "Cluster",
		"machine_types.go":     "Machine",
		"host_types.go":        "Host",
		"annotations_cli.go":   "Annotations basaltctl sets",
	}
)

// readConstants parses the non-test Go files of dir and returns their exported constants.
func readConstants(dir string) ([]constFile, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var out []constFile
	for _, path := range files {
		base := filepath.Base(path)
		if strings.HasSuffix(base, "_test.go") || strings.HasPrefix(base, "zz_generated") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		cf := constFile{name: base, title: fileTitles[base]}
		if cf.title == "" {
			cf.title = base
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			g := constGroup{grouped: gd.Lparen.IsValid(), doc: text(gd.Doc)}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				doc := text(vs.Doc)
				if doc == "" {
					doc = text(vs.Comment)
				}
				if !g.grouped {
					doc = g.doc
				}
				for i, n := range vs.Names {
					if !n.IsExported() {
						continue
					}
					g.consts = append(g.consts, constant{name: n.Name, value: valueOf(vs, i), doc: doc})
				}
			}
			if len(g.consts) > 0 {
				cf.groups = append(cf.groups, g)
			}
		}
		if len(cf.groups) > 0 {
			out = append(out, cf)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no exported constants in %s", dir)
	}
	rank := func(name string) int {
		if i := slices.Index(fileOrder, name); i >= 0 {
			return i
		}
		return len(fileOrder)
	}
	slices.SortFunc(out, func(a, b constFile) int {
		if d := rank(a.name) - rank(b.name); d != 0 {
			return d
		}
		return strings.Compare(a.name, b.name)
	})
	return out, nil
}

// valueOf is the i-th value of vs: a string literal unquoted, anything else as written.
func valueOf(vs *ast.ValueSpec, i int) string {
	if i >= len(vs.Values) {
		return ""
	}
	switch v := vs.Values[i].(type) {
	case *ast.BasicLit:
		if v.Kind == token.STRING {
			if s, err := strconv.Unquote(v.Value); err == nil {
				return s
			}
		}
		return v.Value
	case *ast.Ident:
		return v.Name
	}
	return ""
}

func text(cg *ast.CommentGroup) string {
	if cg == nil {
		return ""
	}
	return strings.Join(strings.Fields(cg.Text()), " ")
}

func writeConstants(b *bytes.Buffer, files []constFile) {
	b.WriteString("## Constants\n\n")
	b.WriteString("Condition types, reasons, phases, finalizers, annotations and labels, from `api/v1alpha1`.\n\n")
	for _, f := range files {
		fmt.Fprintf(b, "### %s\n\n", f.title)
		var loose []constant
		flush := func() {
			if len(loose) == 0 {
				return
			}
			table(b, loose)
			loose = nil
		}
		for _, g := range f.groups {
			if !g.grouped {
				loose = append(loose, g.consts...)
				continue
			}
			flush()
			if g.doc != "" {
				b.WriteString(g.doc + "\n\n")
			}
			table(b, g.consts)
		}
		flush()
	}
}

func table(b *bytes.Buffer, consts []constant) {
	b.WriteString("| name | value | meaning |\n| --- | --- | --- |\n")
	for _, c := range consts {
		fmt.Fprintf(b, "| `%s` | `%s` | %s |\n", c.name, cell(c.value), cell(c.doc))
	}
	b.WriteString("\n")
}
