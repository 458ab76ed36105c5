// k8s-validate decodes every YAML document of the files it is given strictly
// into the Kubernetes API types (client-go's scheme): an unknown kind, an
// unknown or duplicated field, or a value of the wrong type is an error.
// It needs no cluster and no schema download (kubeconform would).
//
//	go run . FILE...    prints "ok FILE#N Kind namespace/name" per document,
//	                    "FAIL FILE#N: error" per bad one; exit 1 if any failed
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// onlyComments is true for a document holding nothing but comments and blank lines.
func onlyComments(doc []byte) bool {
	for _, l := range strings.Split(string(doc), "\n") {
		t := strings.TrimSpace(l)
		if t != "" && !strings.HasPrefix(t, "#") && t != "---" {
			return false
		}
	}
	return true
}

func validate(file string, s *json.Serializer) (ok, bad int, err error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ok, bad + 1, fmt.Errorf("%s#%d: %w", file, n, err)
		}
		if onlyComments(doc) {
			n--
			continue
		}
		obj, gvk, err := s.Decode(bytes.TrimSpace(doc), nil, nil)
		if err != nil {
			fmt.Printf("FAIL %s#%d: %v\n", file, n, err)
			bad++
			continue
		}
		name := "?"
		if m, e := meta.Accessor(obj); e == nil {
			name = m.GetName()
			if ns := m.GetNamespace(); ns != "" {
				name = ns + "/" + name
			}
		}
		fmt.Printf("ok %s#%d %s %s\n", file, n, gvk.Kind, name)
		ok++
	}
	return ok, bad, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: k8s-validate FILE...")
		os.Exit(2)
	}
	s := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	var _ runtime.Decoder = s
	okAll, badAll := 0, 0
	for _, file := range os.Args[1:] {
		ok, bad, err := validate(file, s)
		if err != nil {
			fmt.Printf("FAIL %v\n", err)
		}
		if ok+bad == 0 && err == nil {
			fmt.Printf("FAIL %s: no Kubernetes document in it\n", file)
			bad++
		}
		okAll += ok
		badAll += bad
	}
	fmt.Printf("%d valid, %d invalid\n", okAll, badAll)
	if badAll > 0 {
		os.Exit(1)
	}
}
