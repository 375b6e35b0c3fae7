package policies

import "bytes"

// Message is a Request held in memory: the synthetic admission request, and
// what test_policy runs. Header names keep their case; lookups ignore it.
type Message struct {
	MethodValue []byte
	URIValue    []byte
	Source      []byte
	Header      []Field
	BodyValue   []byte
	// BodyHidden: the request has a body the policy may not read (see
	// Request.Body).
	BodyHidden bool
}

// NewMessage returns a request with the given method, URI and body.
func NewMessage(method, uri string, body []byte) *Message {
	return &Message{MethodValue: []byte(method), URIValue: []byte(uri), BodyValue: body}
}

func (m *Message) Method() []byte          { return m.MethodValue }
func (m *Message) SetMethod(method []byte) { m.MethodValue = append(m.MethodValue[:0], method...) }
func (m *Message) URI() []byte             { return m.URIValue }
func (m *Message) SetURI(uri []byte)       { m.URIValue = append(m.URIValue[:0], uri...) }
func (m *Message) SourceAddr() []byte      { return m.Source }
func (m *Message) Body() ([]byte, bool)    { return m.BodyValue, !m.BodyHidden }

func (m *Message) AppendHeaderNames(dst []byte) ([]byte, int) {
	n := 0
	for i, f := range m.Header {
		seen := false
		for _, g := range m.Header[:i] {
			if bytes.EqualFold(f.Name, g.Name) {
				seen = true
				break
			}
		}
		if !seen {
			dst = append(appendLower(dst, f.Name), 0)
			n++
		}
	}
	return dst, n
}

func (m *Message) AppendHeaderValues(dst, name []byte) ([]byte, int) {
	n := 0
	for _, f := range m.Header {
		if bytes.EqualFold(f.Name, name) {
			dst = append(append(dst, f.Value...), 0)
			n++
		}
	}
	return dst, n
}

func (m *Message) SetHeader(name, value []byte) {
	m.RemoveHeader(name)
	m.AddHeader(name, value)
}

func (m *Message) AddHeader(name, value []byte) {
	m.Header = append(m.Header, Field{bytes.Clone(name), bytes.Clone(value)})
}

func (m *Message) RemoveHeader(name []byte) { m.Header = withoutField(m.Header, name) }
