/// A zero-initialised heap block, allocated once and freed with its owner.
/// Used for every activation, gradient and optimizer buffer so that nothing
/// allocates in the training or sampling loops.
final class Buffer<Element> {
    let pointer: UnsafeMutablePointer<Element>
    let count: Int

    init(count: Int, zero: Element) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: zero, count: max(count, 1))
    }

    deinit { pointer.deallocate() }

    func fill(_ value: Element) { pointer.update(repeating: value, count: count) }
}

extension Buffer where Element == Float {
    convenience init(count: Int) { self.init(count: count, zero: 0) }
    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}
