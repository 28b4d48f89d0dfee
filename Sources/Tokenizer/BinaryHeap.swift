// A binary min-heap: the priority queue behind long-piece encoding (merge candidates by rank and
// position) and BPE training (pairs by count).

struct BinaryHeap<Element: Comparable> {
    private var items: [Element] = []

    var isEmpty: Bool { items.isEmpty }

    mutating func push(_ element: Element) {
        items.append(element)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if !(items[i] < items[p]) { break }
            items.swapAt(p, i)
            i = p
        }
    }

    /// Removes and returns the smallest element.
    mutating func pop() -> Element? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && items[l] < items[m] { m = l }
                if r < n && items[r] < items[m] { m = r }
                if m == i { break }
                items.swapAt(m, i)
                i = m
            }
        }
        return top
    }
}
